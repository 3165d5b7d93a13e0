"""A standing corpus of bad input, run through the real CLI (`lmforge init` and
`lmforge run --until split`), in process.

Every case must end one of two ways: a user error (exit 1, the error in one line on stderr
naming the file / row / column / YAML key, no traceback), or a success whose outcome is
right (a latin-1 file read with its accents, a row without a label waiting for the label
stage). A traceback, exit 2, or a success that trained on the wrong thing fails the case.
New kinds of bad input belong here: add a `Case`.
"""

from __future__ import annotations

import json
import random
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from lmforge.cli import app
from lmforge.config import load_config
from tests.conftest import TOPICS, fast_config, make_rows, write_csv

runner = CliRunner()


@dataclass(frozen=True)
class Outcome:
    """What a command did: exit code, its two streams, and where it worked."""

    code: int
    stdout: str
    stderr: str
    folder: Path
    data: Path  # the data file (data.train, or the file given to init)

    def split(self, name: str) -> pd.DataFrame:
        """A table of the newest run's split stage (train / validation / test)."""
        run_dir = sorted((self.folder / "runs").glob("2*"))[-1]
        return pd.read_parquet(run_dir / "split" / f"{name}.parquet")

    def stage_rows(self, stage: str) -> dict[str, int]:
        run_dir = sorted((self.folder / "runs").glob("2*"))[-1]
        return json.loads((run_dir / stage / "manifest.json").read_text())["rows"]

    def texts(self) -> set[str]:
        return {t for name in ("train", "validation", "test") for t in self.split(name)["text"]}


@dataclass(frozen=True)
class Err:
    """A user error: exit 1, one line on stderr holding every fragment."""

    fragments: tuple[str, ...]


@dataclass(frozen=True)
class Ok:
    """A success; `check` asserts its outcome is right, `stderr` holds lines it must warn."""

    check: Callable[[Outcome], None] | None = None
    stderr: tuple[str, ...] = ()


Expect = Err | Ok


@dataclass(frozen=True)
class Case:
    name: str
    data: Callable[[Path], Path]  # writes the data into a folder, returns data.train
    run: Expect | None  # `lmforge run --until split`; None: not a run case
    init: Expect | None  # `lmforge init DATA`; None: not an init case
    config: Callable[[dict[str, Any]], None] | None = None  # edits the fast config
    yaml_text: str | bytes | None = None  # the config file as written, instead of the dict
    args: tuple[str, ...] = ()  # more `lmforge run` arguments
    argv: Callable[[Path], list[str]] | None = None  # the whole command line, given the folder


def err(*fragments: str) -> Err:
    return Err(fragments)


# --- data files ---------------------------------------------------------------------------


def good(folder: Path) -> Path:
    return write_csv(folder / "data.csv", make_rows(per_class=10))


def text_file(name: str, content: str | bytes) -> Callable[[Path], Path]:
    def make(folder: Path) -> Path:
        path = folder / name
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
        return path

    return make


def rows_csv(
    rows: list[tuple[Any, ...]], header: tuple[str, ...] = ("text", "label")
) -> Callable[[Path], Path]:
    return lambda folder: write_csv(folder / "data.csv", rows, header)


def encoded(
    encoding: str, extra: bytes = b"", newline: str = "\n", label: str = "{}"
) -> Callable[[Path], Path]:
    """The good rows with accents, in `encoding` (plus `extra` bytes appended), lines ended
    by `newline`, each label written as `label` formats it."""

    def make(folder: Path) -> Path:
        rows = [(t.replace("please", "pléase"), label.format(lb)) for t, lb in make_rows(per_class=10)]
        body = "".join(f"{t},{lb}{newline}" for t, lb in [("text", "label"), *rows])
        path = folder / "data.csv"
        path.write_bytes(body.encode(encoding) + extra)
        return path

    return make


def same_file_as_test(config: dict[str, Any]) -> None:
    config["data"]["test"] = config["data"]["train"]


def frame_file(name: str, columns: dict[str, list[Any]]) -> Callable[[Path], Path]:
    def make(folder: Path) -> Path:
        path = folder / name
        frame = pd.DataFrame(columns)
        if name.endswith(".parquet"):
            frame.to_parquet(path)
        else:
            path.write_text("".join(json.dumps(r) + "\n" for r in frame.to_dict("records")))
        return path

    return make


def jsonl(lines: list[str]) -> Callable[[Path], Path]:
    return text_file("data.jsonl", "".join(line + "\n" for line in lines))


def folder_named(folder: Path) -> Path:
    path = folder / "data.csv"
    path.mkdir()
    return path


def symlink_loop(folder: Path) -> Path:
    (folder / "a.csv").symlink_to(folder / "b.csv")
    (folder / "b.csv").symlink_to(folder / "a.csv")
    return folder / "a.csv"


def dangling_link(folder: Path) -> Path:
    (folder / "data.csv").symlink_to(folder / "gone.csv")
    return folder / "data.csv"


def xlsx_as_csv(folder: Path) -> Path:
    path = folder / "data.csv"
    with zipfile.ZipFile(path, "w") as book:  # what an .xlsx is: a ZIP of XML parts
        book.writestr("[Content_Types].xml", "<Types/>")
        book.writestr("xl/workbook.xml", "<workbook/>")
    return path


def garbage(folder: Path) -> Path:
    path = folder / "data.csv"
    path.write_bytes(random.Random(0).randbytes(4096))
    return path


def huge_cell(folder: Path) -> Path:
    rows = make_rows(per_class=10)
    rows[0] = ("refund " * 750_000, rows[0][1])  # a 5 MB cell
    return write_csv(folder / "data.csv", rows)


def mostly_numbers(folder: Path) -> Path:
    # Texts that are numbers beside texts of words. "11.3" is token "11" to TF-IDF, so the
    # number rows form two learnable classes; the few flipped labels among them are what
    # label-noise flags, and label_issues.csv then holds only numbers: it must read back
    # as text, not as floats.
    rows = [(f"{11 * (1 + i % 2)}.{i}", "billing" if i % 2 else "bug") for i in range(40)]
    rows = [
        (t, ("bug" if lb == "billing" else "billing") if i % 10 == 0 else lb)
        for i, (t, lb) in enumerate(rows)
    ]
    return write_csv(folder / "data.csv", rows + make_rows(per_class=10, seed=1))


def labels(values: list[str]) -> Callable[[Path], Path]:
    return rows_csv(
        [(f"{t} row {i}", v) for i, ((t, _), v) in enumerate(zip(make_rows(), values, strict=False))]
    )


def quoted_newlines(folder: Path) -> Path:
    rows = [(f'"{t}",\n second line', label) for t, label in make_rows(per_class=10)]
    return write_csv(folder / "data.csv", rows)


# --- outcome checks -----------------------------------------------------------------------


def has_text(fragment: str) -> Callable[[Outcome], None]:
    def check(out: Outcome) -> None:
        assert any(fragment in t for t in out.texts()), f"no text holds {fragment!r}"

    return check


def no_mojibake(out: Outcome) -> None:
    texts = out.texts()
    assert any("pléase" in t for t in texts) and not any("Ã" in t or "\ufffd" in t for t in texts)


def header_read(out: Outcome) -> None:
    assert len(out.texts()) > 20 and not any(t.startswith("\ufeff") for t in out.texts())


def waits_for_label(count: int) -> Callable[[Outcome], None]:
    def check(out: Outcome) -> None:
        assert out.stage_rows("validate")["unlabeled"] == count

    return check


def init_wrote(text_column: str, label_column: str) -> Callable[[Outcome], None]:
    def check(out: Outcome) -> None:
        written = yaml.safe_load((out.folder / "init.yaml").read_text())
        assert (written["data"]["text_column"], written["data"]["label_column"]) == (
            text_column,
            label_column,
        )

    return check


def only_unlabeled(out: Outcome) -> None:
    # Zero-shot labelling (label.labels) starts from no labelled row: clean passes them on.
    rows = out.stage_rows("clean")
    assert rows["train"] == 0 and rows["unlabeled"] > 30


def labels_are(expected: set[str]) -> Callable[[Outcome], None]:
    def check(out: Outcome) -> None:
        assert set(out.split("train")["label"]) == expected

    return check


def existing_output(folder: Path) -> list[str]:
    (folder / "init.yaml").write_text("project: mine\n")
    return ["init", str(folder / "data.csv"), "--output", str(folder / "init.yaml")]


def edit(**changes: Any) -> Callable[[dict[str, Any]], None]:
    """Set `section.key` (or a top-level key) of the config."""

    def apply(config: dict[str, Any]) -> None:
        for key, value in changes.items():
            section, _, name = key.partition("__")
            if name:
                config.setdefault(section, {})[name] = value
            else:
                config[section] = value

    return apply


def as_generation(config: dict[str, Any], data: str) -> None:
    """The fast config as a generation config (its model is never loaded before `train`)."""
    config.update(task="generation", data={"train": data})
    config.pop("label")  # classification settings are errors for generation
    config["train"].pop("pooling")


NAN_ROWS = {
    "text": [t for t, _ in make_rows(per_class=10)],
    "label": [lb for _, lb in make_rows(per_class=10)],
}
NAN_ROWS["label"][:3] = [None, float("nan"), None]
INT_TEXT = {"text": list(range(40)), "label": ["a", "b"] * 20}
GOOD_YAML = "data: {train: data.csv}\n"

CASES = [
    # malformed CSV
    Case(
        "unbalanced-quote",
        text_file("data.csv", 'text,label\nfine,a\n"never closed,b\n'),
        err("data.csv", "row 3", "never closed"),
        err("row 3"),
    ),
    Case(
        "ragged-long-row",
        text_file("data.csv", 'text,label\nfine,a\n"x",b,extra\n'),
        err("row 3", "expected 2 fields, saw 3"),
        err("row 3"),
    ),
    Case(
        "ragged-short-row",
        lambda f: text_file(
            "data.csv",
            "text,label\n" + "".join(f"{t},{lb}\n" for t, lb in make_rows(per_class=10)) + "lonely row\n",
        )(f),
        Ok(waits_for_label(1)),
        Ok(),
    ),
    Case(
        "duplicate-column",
        text_file("data.csv", "text,text,label\na,b,c\n"),
        err("data.csv", "row 1", "column 'text'", "more than once"),
        err("more than once"),
    ),
    Case("no-header", text_file("data.csv", ",\nhello,a\n"), err("header"), err("header")),
    Case("quoted-newlines-and-commas", quoted_newlines, Ok(has_text('"')), Ok(init_wrote("text", "label"))),
    Case(
        "tsv",
        lambda f: text_file(
            "data.tsv", "text\tlabel\n" + "".join(f"{t}\t{lb}\n" for t, lb in make_rows(per_class=10))
        )(f),
        Ok(has_text("please")),
        Ok(init_wrote("text", "label")),
    ),
    Case("old-mac-line-ends", encoded("utf-8", newline="\r"), Ok(no_mojibake), Ok()),
    Case("windows-line-ends", encoded("utf-8", newline="\r\n"), Ok(labels_are(set(TOPICS))), Ok()),
    Case("labels-with-spaces", encoded("utf-8", label=" {} "), Ok(labels_are(set(TOPICS))), Ok()),
    Case(
        "semicolon-separated",
        text_file("data.csv", "text;label\nhello there;a\n"),
        err("column 'text'", "no text column", "text;label"),
        err("found 1 column"),
    ),
    # encodings
    Case("utf-16-le-no-bom", encoded("utf-16-le"), Ok(no_mojibake), Ok()),
    Case(
        "nul-byte-in-a-cell",
        encoded("utf-8", b"ok\x00ok,bug\n"),
        err("data.csv", "row 42", "NUL"),
        err("NUL"),
    ),
    Case("latin-1", encoded("latin-1"), Ok(no_mojibake), Ok()),
    Case("cp1252", encoded("cp1252"), Ok(no_mojibake), Ok()),
    Case("utf-16-bom", encoded("utf-16"), Ok(no_mojibake), Ok()),
    Case("utf-8-bom", encoded("utf-8-sig"), Ok(header_read), Ok(init_wrote("text", "label"))),
    Case("invalid-utf8-bytes", encoded("utf-8", b"stray \xff\xfe bytes,bug\n"), Ok(no_mojibake), Ok()),
    Case(
        "explicit-encoding-mismatch",
        encoded("utf-8", b"caf\xe9,bug\n"),
        err("data.csv", "0xe9", "data.encoding"),
        None,
        edit(data__encoding="utf-8"),
    ),
    Case("unknown-encoding", good, err("unknown encoding 'klingon'"), None, edit(data__encoding="klingon")),
    # empty, header-only, no data
    Case("empty-file", text_file("data.csv", ""), err("data.csv", "empty"), err("empty")),
    Case("whitespace-file", text_file("data.csv", " \n\n \n"), err("data.csv", "empty"), err("empty")),
    Case("header-only", text_file("data.csv", "text,label\n"), err("data.csv", "no rows"), err("no rows")),
    # labels
    Case(
        "all-empty-labels",
        labels([""] * 40),
        err("data.csv", "column 'label'", "no row has a label"),
        err("column 'label'", "no row has a label"),
    ),
    Case("blank-labels", labels(["  "] * 40), err("no row has a label"), err("no row has a label")),
    Case(
        "no-labels-but-label-names",
        labels([""] * 40),
        Ok(only_unlabeled),
        None,
        edit(label__labels=["a", "b"]),
        args=("--until", "clean"),
    ),
    Case(
        "one-class",
        labels(["spam"] * 40),
        err("column 'label'", "only one class ('spam')"),
        err("only one class ('spam')"),
    ),
    Case(
        "one-row-per-class",
        labels(["a", "b", "c"]),
        err("column 'label'", "fewer than 5 rows"),
        Ok(stderr=("3 of 3 classes have fewer than 5 rows", "validate.min_rows_per_class")),
    ),
    Case("nan-labels-parquet", frame_file("data.parquet", NAN_ROWS), Ok(waits_for_label(3)), Ok()),
    Case(
        "nan-labels-jsonl",
        jsonl(
            [json.dumps({"text": t, "label": lb}) for t, lb in make_rows(per_class=10)]
            + ['{"text": "no label here", "label": NaN}']
        ),
        Ok(waits_for_label(1)),
        Ok(),
    ),
    Case(
        "blank-texts",
        rows_csv([("", "a")] * 30 + [("hello", "b")] * 5),
        err("rows rejected", "missing text"),
        None,
    ),
    # wrong types in the text column
    Case(
        "int-text-parquet",
        frame_file("data.parquet", INT_TEXT),
        err("data.parquet", "column 'text'", "int64", "data.text_column"),
        err("column 'text'", "int64"),
    ),
    Case(
        "float-text-parquet",
        frame_file("data.parquet", {**INT_TEXT, "text": [i / 2 for i in range(40)]}),
        err("column 'text'", "float64"),
        err("float64"),
    ),
    Case(
        "int-text-jsonl",
        frame_file("data.jsonl", INT_TEXT),
        err("data.jsonl", "row 1", "column 'text'", "a number"),
        err("a number"),
    ),
    Case(
        "int-answers-generation-jsonl",  # `str()` trained on "0", "1", ... as answers
        frame_file("data.jsonl", {"prompt": NAN_ROWS["text"], "response": list(range(40))}),
        err("data.jsonl", "row 1", "column 'response'", "a number", "data.response_column"),
        None,
        lambda c: as_generation(c, "data.jsonl"),
    ),
    Case(
        "some-int-texts-jsonl",
        jsonl(
            [json.dumps({"text": t, "label": lb}) for t, lb in make_rows(per_class=10)]
            + ['{"text": 7, "label": "bug"}']
        ),
        err("data.jsonl", "row 41", "column 'text'", "a number"),
        err("row 41"),
    ),
    Case(
        "int-labels-parquet",
        frame_file("data.parquet", {"text": NAN_ROWS["text"], "label": [i % 2 for i in range(40)]}),
        Ok(labels_are({"0", "1"})),
        Ok(),
    ),
    Case(
        "list-text-jsonl",
        jsonl([json.dumps({"text": ["a", "b"], "label": "x"})] * 30),
        err("column 'text'", "a list"),
        None,
    ),
    Case(
        "numeric-text-csv",
        rows_csv([(i, "ab"[i % 2]) for i in range(40)]),
        err("data.csv", "column 'text'", "every value is a number"),
        err("every value is a number"),
    ),
    Case("mostly-numeric-text", mostly_numbers, Ok(has_text("11.1")), Ok(), edit(clean__label_noise="flag")),
    # JSON shape
    Case(
        "jsonl-non-object-line",
        jsonl(['{"text": "a", "label": "b"}', "[1, 2]"]),
        err("data.jsonl", "row 2", "JSON object"),
        err("row 2"),
    ),
    Case(
        "jsonl-bad-line",
        jsonl(['{"text": "a", "label": "b"}', '{"text": oops}']),
        err("row 2", "invalid JSON"),
        err("row 2"),
    ),
    Case(
        "json-array-of-numbers",
        text_file("data.json", "[1, 2, 3]"),
        err("data.json", "row 1", "object"),
        err("row 1"),
    ),
    # not a data file at all
    Case("folder", folder_named, err("data.csv", "is a folder"), err("is a folder")),
    Case("symlink-loop", symlink_loop, err("a.csv", "symbolic link"), err("symbolic link")),
    Case("dangling-symlink", dangling_link, err("data.csv", "symbolic link"), err("symbolic link")),
    Case("missing-file", lambda f: f / "nowhere.csv", err("nowhere.csv", "not found"), err("not found")),
    Case("xlsx-renamed-csv", xlsx_as_csv, err("data.csv", "ZIP", "save it as CSV"), err("ZIP")),
    Case("binary-garbage", garbage, err("data.csv"), err("data.csv")),
    Case(
        "corrupt-parquet",
        text_file("data.parquet", b"PAR1 not really"),
        err("data.parquet", "cannot read Parquet"),
        err("Parquet"),
    ),
    Case(
        "unknown-extension",
        text_file("data.xls", "a,b\n"),
        err("data.xls", "unknown file type"),
        err("unknown file type"),
    ),
    Case("huge-cell", huge_cell, Ok(has_text("refund refund")), Ok()),
    Case(
        "test-file-is-train-file", good, err("no train rows", "split.remove_leakage"), None, same_file_as_test
    ),
    Case(
        "validation-is-a-folder",
        good,
        err("empty-model", "is a folder"),
        None,
        edit(data__validation="empty-model"),
    ),
    Case(
        "format-says-parquet",
        good,
        err("data.csv", "cannot read Parquet"),
        None,
        edit(data__format="parquet"),
    ),
    # the YAML config
    Case(
        "yaml-syntax-error",
        good,
        err("lmforge.yaml", "line 2", "invalid YAML"),
        None,
        yaml_text="data: {train: data.csv\ntask: [\n",
    ),
    Case(
        "yaml-tabs",
        good,
        err("lmforge.yaml", "invalid YAML", "tab"),
        None,
        yaml_text="data:\n\ttrain: data.csv\n",
    ),
    Case(
        "yaml-duplicate-key",
        good,
        err("lmforge.yaml", "line 3", "key 'train' appears twice"),
        None,
        yaml_text="data: {train: data.csv}\ntrain: {epochs: 1}\ntrain: {batch_size: 4}\n",
    ),
    Case("yaml-top-level-list", good, err("lmforge.yaml", "mapping"), None, yaml_text="- data\n- train\n"),
    Case("yaml-empty", good, err("lmforge.yaml", "empty"), None, yaml_text=""),
    Case(
        "yaml-not-utf8",
        good,
        err("lmforge.yaml", "not UTF-8"),
        None,
        yaml_text=b"project: caf\xe9\n" + GOOD_YAML.encode(),
    ),
    Case("yaml-wrong-type", good, err("train.epochs", "'three'"), None, edit(train__epochs="three")),
    Case(
        "yaml-unknown-key",
        good,
        err("trian: unknown key", "did you mean 'train'"),
        None,
        edit(trian={"epochs": 1}),
    ),
    Case("yaml-section-not-a-mapping", good, err("train:", "valid dictionary"), None, edit(train=[1, 2])),
    Case(
        "yaml-missing-train",
        good,
        err("data.train: required key is missing"),
        None,
        yaml_text="data: {text_column: text}\n",
    ),
    Case(
        "text-column-is-label-column",
        good,
        err("data.label_column", "data.text_column", "'text'"),
        None,
        edit(data__label_column="text"),
    ),
    Case(
        "swapped-columns",
        good,
        err("column 'label'", "fewer than 5 rows", "and 35 more", "swapped?"),
        None,
        edit(data={"train": "data.csv", "text_column": "label", "label_column": "text"}),
    ),
    Case(
        "wrong-text-column",
        good,
        err("column 'body'", "no text column", "data.text_column"),
        None,
        edit(data__text_column="body"),
    ),
    Case(
        "max-length-huge",
        good,
        err("train.max_length", "131072", "1000000"),
        None,
        edit(train__max_length=1_000_000),
    ),
    Case(
        "unknown-model",
        good,
        err("model 'no-such-model'", "minilm-l6", "`model:`"),
        None,
        edit(model="no-such-model"),
    ),
    Case(
        "model-folder-without-config",
        good,
        err("no config.json", "`model:`"),
        None,
        edit(model="empty-model"),
    ),
    Case(
        "hub-model-not-cached-offline",  # the tests run with HF_HUB_OFFLINE=1 (conftest)
        good,
        err("model 'nobody/no-such-model'", "HF_HUB_OFFLINE", "minilm-l6"),
        None,
        edit(model="nobody/no-such-model"),
    ),
    Case(
        "unknown-candidate-model",
        good,
        err("model 'nope'", "minilm-l6"),
        None,
        lambda c: c.update(model=[c["model"], "nope"]),
    ),
    Case(
        "split-leaves-no-train",
        good,
        err("split", "< 0.9"),
        None,
        edit(split={"validation": 0.5, "test": 0.45}),
    ),
    Case(
        "config-is-a-folder", good, err("is a folder", "lmforge.yaml"), None, argv=lambda f: ["run", str(f)]
    ),
    Case(
        "config-missing",
        good,
        err("config file not found", "lmforge init"),
        None,
        argv=lambda f: ["run", str(f / "nope.yaml")],
    ),
    Case("init-output-exists", good, None, err("init.yaml exists", "--force"), argv=existing_output),
    Case(
        "init-output-in-missing-folder",
        good,
        None,
        err("cannot write", "x.yaml"),
        argv=lambda f: ["init", str(f / "data.csv"), "-o", str(f / "no" / "x.yaml")],
    ),
    Case(
        "bad-override",
        good,
        err("override 'train.epochs'", "key.path=value"),
        None,
        args=("--set", "train.epochs"),
    ),
    Case("unknown-until-stage", good, err("--until: unknown stage splat"), None, args=("--until", "splat")),
]


def _params() -> list[Any]:
    return [
        pytest.param(case, command, id=f"{case.name}-{command}")
        for case in CASES
        for command in ("run", "init")
        if getattr(case, command) is not None
    ]


def _invoke(case: Case, command: str, folder: Path, model: Path) -> Outcome:
    data = case.data(folder)
    if case.argv is not None:
        result = runner.invoke(app, case.argv(folder))
    elif command == "init":
        result = runner.invoke(app, ["init", str(data), "--output", str(folder / "init.yaml")])
    else:
        (folder / "empty-model").mkdir()
        config = fast_config(folder, data, model)
        config["clean"] = {"label_noise": "off"}  # fast; the label-noise case turns it back on
        if case.config is not None:
            case.config(config)
        path = folder / "lmforge.yaml"
        text = case.yaml_text if case.yaml_text is not None else yaml.safe_dump(config)
        path.write_bytes(text if isinstance(text, bytes) else text.encode())
        until = () if "--until" in case.args else ("--until", "split")
        result = runner.invoke(app, ["run", str(path), *until, *case.args])
    return Outcome(result.exit_code, result.stdout, result.stderr, folder, data)


@pytest.mark.parametrize(("case", "command"), _params())
def test_bad_input_is_a_user_error_or_a_right_success(
    case: Case, command: str, tmp_path: Path, tiny_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    expect = getattr(case, command)
    out = _invoke(case, command, tmp_path, tiny_model)
    both = out.stdout + out.stderr
    assert "Traceback" not in both and "internal error" not in both, both
    if isinstance(expect, Err):
        assert out.code == 1, both
        lines = [line for line in out.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and len(lines[0]) < 600, out.stderr  # one line, not a wall of text
        for fragment in expect.fragments:
            assert fragment in lines[0], (fragment, lines[0])
    else:
        assert out.code == 0, both
        for fragment in expect.stderr:
            assert fragment in out.stderr, (fragment, out.stderr)
        if command == "init" and case.argv is None:  # what init wrote must load and name the data
            written = load_config(tmp_path / "init.yaml")
            assert written.resolve_path(written.data.train).resolve() == out.data.resolve()
        if expect.check is not None:
            expect.check(out)
