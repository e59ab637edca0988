// Upload page: drop files onto the drop zone to put them in the form's file input, and list
// them. Without JavaScript the plain file input does the same job.
document.addEventListener("DOMContentLoaded", function () {
  var zone = document.getElementById("ocb-drop");
  var input = document.getElementById("ocb-files");
  var list = document.getElementById("ocb-file-list");
  if (!zone || !input || !list) return;

  function show(files) {
    list.textContent = "";
    Array.prototype.forEach.call(files, function (file) {
      var item = document.createElement("li");
      item.textContent = file.name + " (" + Math.max(1, Math.round(file.size / 1024)) + " KB)";
      list.appendChild(item);
    });
  }

  ["dragenter", "dragover"].forEach(function (name) {
    zone.addEventListener(name, function (event) {
      event.preventDefault();
      zone.classList.add("ocb-dragging");
    });
  });
  ["dragleave", "drop"].forEach(function (name) {
    zone.addEventListener(name, function (event) {
      event.preventDefault();
      zone.classList.remove("ocb-dragging");
    });
  });
  zone.addEventListener("drop", function (event) {
    if (!event.dataTransfer || !event.dataTransfer.files.length) return;
    input.files = event.dataTransfer.files;
    show(input.files);
  });
  input.addEventListener("change", function () {
    show(input.files);
  });
});
