// The index: every run the server was given, refreshed while runs train.
"use strict";

async function refresh() {
  const { runs } = await api("/api/runs");
  const rows = runs.map(r => {
    const link = el("a", { href: "/run/" + r.name.split("/").map(encodeURIComponent).join("/"), text: r.name });
    if (r.error) return el("tr", {}, el("td", {}, link), el("td", { colspan: 5, class: "error", text: r.error }));
    return el("tr", {}, el("td", {}, link), el("td", { text: r.preset || "" }),
      el("td", { class: "num", text: `${r.done} / ${r.epochs}` }), el("td", { class: "num", text: percent(r.validation) }),
      el("td", { class: "num", text: percent(r.test) }), el("td", { class: "num", text: r.params.toLocaleString("en") }));
  });
  document.querySelector("#runs tbody").replaceChildren(...rows);
  document.getElementById("none").hidden = runs.length > 0;
}

refresh();
setInterval(() => refresh().catch(() => {}), 3000);
