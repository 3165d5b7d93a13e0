// Start-a-run form: show only the column fields of the chosen task. Without JS every field
// shows and the form still works; hidden fields are still submitted (blank ones are ignored).
(function () {
  "use strict";
  var task = document.getElementById("f-task");
  if (!task) return;
  function sync() {
    document.querySelectorAll(".field[data-task]").forEach(function (field) {
      field.hidden = field.getAttribute("data-task") !== task.value;
    });
  }
  task.addEventListener("change", sync);
  sync();
})();
