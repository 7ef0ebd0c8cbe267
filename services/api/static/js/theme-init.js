// Applies the saved (or the system's) colour theme before the first paint, so the page never flashes.
(() => {
  let saved = null;
  try {
    saved = localStorage.getItem("cronwork.theme");
  } catch {
    /* storage disabled */
  }
  const prefersDark = window.matchMedia?.("(prefers-color-scheme: dark)").matches;
  document.documentElement.dataset.theme =
    saved === "dark" || saved === "light" ? saved : prefersDark ? "dark" : "light";
})();
