// Links into Airflow's UI (task logs) open in the UI around this page. Airflow frames plugin pages in a
// sandbox without top navigation, but the frame is same-origin: hand the URL to the UI's router. Anywhere
// else (the page opened on its own, another origin), the link is followed as usual.
document.addEventListener("click", (event) => {
  const link = event.target.closest("a[data-ui]");
  if (!link || window.top === window || event.button !== 0 || event.ctrlKey || event.metaKey || event.shiftKey) {
    return;
  }
  try {
    const url = new URL(link.href, window.location.href);
    if (url.origin !== window.top.location.origin) return;
    window.top.history.pushState(null, "", url.pathname + url.search + url.hash);
    window.top.dispatchEvent(new PopStateEvent("popstate", {state: null}));
    event.preventDefault();
  } catch (e) {
    // not allowed here: the frame follows the link itself
  }
});

// "Clear the failed task instances of this run": a JSON POST, so a form on another site cannot send it.
document.querySelectorAll("#clear-failed").forEach((button) => {
  button.addEventListener("click", async () => {
    const out = document.getElementById("clear-result");
    button.disabled = true;
    out.textContent = "clearing…";
    try {
      const r = await fetch(button.dataset.url, {method: "POST", credentials: "same-origin",
        headers: {"Content-Type": "application/json"}, body: "{}"});
      const body = await r.json();
      out.textContent = r.ok ? `cleared ${body.cleared.length} task instances; the scheduler runs them again`
                             : `refused (${r.status}): ${body.detail}`;
    } catch (e) {
      out.textContent = `failed: ${e}`;
    }
    button.disabled = false;
  });
});
