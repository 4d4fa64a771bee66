// Countdowns to the ICO deadline, updated every second; nothing is fetched.
function tick() {
  for (const el of document.querySelectorAll("[data-deadline]")) {
    const left = (Date.parse(el.dataset.deadline) - Date.now()) / 1000;
    const span = Math.abs(left), h = Math.floor(span / 3600), m = Math.floor(span % 3600 / 60),
          s = Math.floor(span % 60);
    const text = `${h}h ${String(m).padStart(2, "0")}m ${String(s).padStart(2, "0")}s`;
    el.textContent = left < 0 ? `OVERDUE by ${text}` : text;
    el.classList.toggle("overdue", left < 0);
  }
}
tick(); setInterval(tick, 1000);
