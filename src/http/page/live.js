// Live refresh: every second, fetch this page's server-rendered fragment and
// swap it in. All rendering happens on the server; this only moves HTML.
(() => {
  const live = document.getElementById("live");
  const conn = document.getElementById("conn");
  const show = (text, ok) => {
    conn.textContent = text;
    conn.className = ok ? "conn live" : "conn lost";
  };
  const tick = async () => {
    if (!document.hidden) {
      try {
        const reply = await fetch("?fragment=1", { cache: "no-store" });
        if (!reply.ok) throw new Error("HTTP " + reply.status);
        live.innerHTML = await reply.text();
        const titled = live.querySelector("[data-title]");
        if (titled) document.title = titled.dataset.title;
        show("live", true);
      } catch (error) {
        show("updates stopped (" + error.message + "), retrying", false);
      }
    }
    setTimeout(tick, 1000);
  };
  show("live", true);
  setTimeout(tick, 1000);
})();
