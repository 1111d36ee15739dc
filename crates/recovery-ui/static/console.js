// concord console: the one script. Everything works without it; it only adds "select the
// whole page" to the mismatch list's first column.
document.addEventListener("DOMContentLoaded", () => {
  const all = document.getElementById("all");
  if (!all) return;
  all.addEventListener("change", () => {
    for (const box of document.querySelectorAll("#records input[name=id]")) {
      box.checked = all.checked;
    }
  });
});
