// The only script of the review page: clicking a value for a conflict shows the updated plan at once.
// Only a pointer (mouse, touch, pen) submits: the arrow keys move a keyboard user through a radio group,
// and each step would reload the page, so they choose, then press Enter or "Show the plan with my choices".
// Without the script the page still works: that button does the same.
document.addEventListener("DOMContentLoaded", function () {
  var form = document.getElementById("plan-form");
  var preview = document.getElementById("preview");
  if (!form || !preview) return;
  var pointerAt = -1;  // when a pointer was last pressed on a choice
  form.addEventListener("pointerdown", function (event) {
    if (event.target && event.target.closest && event.target.closest("label.choice")) pointerAt = event.timeStamp;
  });
  form.addEventListener("keydown", function () { pointerAt = -1; });  // the keyboard took over
  form.addEventListener("change", function (event) {
    var radio = event.target && event.target.type === "radio";
    if (radio && pointerAt >= 0 && event.timeStamp - pointerAt < 2000) {
      pointerAt = -1;
      form.requestSubmit(preview);
    }
  });
});
