"""The model a server is serving, and swapping it for a newer champion without a restart.

A version is downloaded into the state folder's `models/NAME-vN/` once (to a temp folder renamed into
place, so workers starting together never see half a download), loaded, and then published
by replacing one reference: requests already running keep the object they started with.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
from dataclasses import dataclass
from typing import Any

from lmforge.config import ServeConfig
from lmforge.serve.predictor import load_predictor
from lmforge.state_dir import StateDir

log = logging.getLogger("lmforge.serve")


@dataclass(frozen=True)
class Loaded:
    name: str
    version: str
    predictor: Any

    @property
    def task(self) -> str:
        return str(self.predictor.task)


class ModelHolder:
    """Resolves `ref` in the registry, loads it, and reloads when the alias moves."""

    def __init__(self, ref: str, tracking_uri: str, cfg: ServeConfig, state: StateDir) -> None:
        self.ref = ref
        self.tracking_uri = tracking_uri
        self.cfg = cfg
        self.state = state
        self.current: Loaded | None = None
        self.swaps = 0
        self._watcher: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()

    def load_now(self) -> Loaded:
        """Blocking: resolve, download if needed, load (used at start-up)."""
        from lmforge.registry import client_for, resolve

        client = client_for(self.tracking_uri)
        info = resolve(client, self.ref)
        return self._load(client, info.name, str(info.version))

    def _load(self, client: Any, name: str, version: str) -> Loaded:
        from lmforge.registry import download

        folder = self.state.model_dir(name, version)
        if not folder.exists():
            tmp = folder.with_name(f".{folder.name}.tmp-{os.getpid()}")
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
            download(client, f"{name}@{version}", tmp)
            try:
                os.replace(tmp, folder)
            except OSError:  # another worker finished first: use its copy
                shutil.rmtree(tmp, ignore_errors=True)
        predictor = load_predictor(folder, runtime=self.cfg.runtime, threads=self.cfg.threads)
        return Loaded(name, version, predictor)

    async def check(self) -> bool:
        """Load the version `ref` points at now if it differs from the one served; True if swapped."""
        from lmforge.registry import client_for, resolve

        async with self._lock:
            client = client_for(self.tracking_uri)
            info = await asyncio.to_thread(resolve, client, self.ref)
            if self.current and str(info.version) == self.current.version:
                return False
            loaded = await asyncio.to_thread(self._load, client, info.name, str(info.version))
            previous = self.current
            self.current = loaded  # one assignment: the next batch uses the new model
            self.swaps += 1
            log.warning(
                "now serving %s version %s (was %s)",
                loaded.name,
                loaded.version,
                previous.version if previous else None,
            )
            return True

    def start_watching(self) -> None:
        if self.cfg.reload_seconds > 0:
            self._watcher = asyncio.get_running_loop().create_task(self._watch())

    async def stop(self) -> None:
        if self._watcher:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self.cfg.reload_seconds)
            try:
                await self.check()
            except Exception as exc:  # a registry hiccup must not take the server down
                log.warning("registry check failed: %s", exc)
