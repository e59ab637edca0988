// Dashboard: show the chosen period as soon as the select changes (the Show button does the
// same without JavaScript).
document.addEventListener("DOMContentLoaded", function () {
  var select = document.getElementById("ocb-period");
  if (!select) return;
  select.addEventListener("change", function () {
    select.form.submit();
  });
});
