// lmforge review queue: keyboard shortcuts for the answer buttons (a = accept, 1-9 = label n,
// s = skip). Each key clicks the button carrying data-key, so the form posts exactly as a click.
(function () {
  "use strict";
  let sent = false;
  document.addEventListener("keydown", (event) => {
    if (sent || event.ctrlKey || event.metaKey || event.altKey) return;
    const target = event.target;
    if (target && /^(INPUT|TEXTAREA|SELECT)$/.test(target.tagName)) return;
    const key = event.key.toLowerCase();
    const button = document.querySelector('button[data-key="' + CSS.escape(key) + '"]');
    if (!button) return;
    event.preventDefault();
    sent = true; // one answer per page: a held key must not answer the next item blind
    button.click();
  });
})();
