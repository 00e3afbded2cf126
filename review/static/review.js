// The only script of the review page: choosing a value for a conflict shows the updated plan at once.
// Without it the page still works: "Show the plan with my choices" does the same.
document.addEventListener("DOMContentLoaded", function () {
  var form = document.getElementById("plan-form");
  var preview = document.getElementById("preview");
  if (!form || !preview) return;
  form.addEventListener("change", function (event) {
    if (event.target && event.target.type === "radio") form.requestSubmit(preview);
  });
});
