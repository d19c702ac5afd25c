// The HTML report's own CSS and script, inline: the page opens from disk with no network access
// (its Content-Security-Policy allows nothing to be fetched).
#include "print/report_assets.hpp"

#include "print/plan_svg.hpp"

namespace layerfreeze {

std::string report_head(const std::string& title) {
  return "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
         "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; "
         "style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:\">\n"
         "<title>" +
         xml_escape(title) + R"(</title>
<style>
body { font-family: sans-serif; margin: 1.5em; color: #222; }
h1 small { font-weight: normal; color: #555; }
.meta { font-family: monospace; font-size: 13px; line-height: 1.5; }
#picture { overflow-x: auto; border: 1px solid #ddd; padding: 4px; }
#picture rect.lf-cell { cursor: pointer; }
#picture rect.lf-cell.selected { stroke: #000; stroke-width: 2; }
table { border-collapse: collapse; font-size: 13px; }
th, td { border: 1px solid #ccc; padding: 3px 8px; text-align: left; }
td.num { text-align: right; }
#browser { display: flex; gap: 1.5em; align-items: flex-start; }
#browser > div { flex: 1; min-width: 0; }
#filter { width: 100%; font-family: monospace; padding: 4px; box-sizing: border-box; }
#params { list-style: none; padding: 0; font-family: monospace; font-size: 12px; max-height: 32em; overflow-y: auto; }
#params li { padding: 2px 4px; cursor: pointer; white-space: nowrap; }
#params li:hover, #params li.selected { background: #eef3fa; }
.strip { display: inline-block; margin-right: 6px; vertical-align: middle; }
.strip i { display: inline-block; width: 8px; height: 10px; margin-right: 1px; }
.F { background: #4e79a7; } .T { background: #f28e2b; } .P { background: #fbd7a8; outline: 1px dotted #5a5a5a; } .none { color: #777; }
#provenance { font-size: 13px; }
#provenance code { font-size: 12px; }
</style>
</head>
<body>
)";
}

std::string report_browser() {
  return R"(<h2>Parameters</h2>
<div id="browser">
<div>
<input id="filter" type="search" placeholder="filter: a part of a name, or /regex/" aria-label="filter parameters">
<p id="count" class="none"></p>
<ul id="params"></ul>
</div>
<div>
<div id="provenance" class="none">Click a parameter or a cell of the picture to see which rule decides it at each change point.</div>
</div>
</div>
)";
}

std::string report_script() {
  return R"JS(<script>
(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("lf-data").textContent);
  var words = { F: "frozen", T: "trainable", P: "partial (masked experts)", "-": "" };
  var list = document.getElementById("params");
  var count = document.getElementById("count");
  var prov = document.getElementById("provenance");
  var filter = document.getElementById("filter");
  var rowFilter = -1;
  var LIMIT = 400;

  function esc(s) {
    return String(s).replace(/[&<>"]/g, function (c) {
      return { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" }[c];
    });
  }
  // Every name of an entry (its index ranges multiplied out), one by one until f says stop.
  function eachName(e, f) {
    // A template without numbers is the name itself ('#' may be part of it).
    var parts = e.indices.length ? e.template.split("#") : [e.template];
    var lists = e.indices.map(function (runs) {
      var v = [];
      runs.forEach(function (r) { for (var k = r[0]; k <= r[1]; k++) v.push(k); });
      return v;
    });
    var pos = lists.map(function () { return 0; });
    for (;;) {
      var name = parts[0];
      for (var p = 0; p < lists.length; p++) name += lists[p][pos[p]] + parts[p + 1];
      if (f(name) === false) return;
      var q = lists.length - 1;
      while (q >= 0 && ++pos[q] === lists[q].length) { pos[q] = 0; q--; }
      if (q < 0) return;
    }
  }
  function matcher() {
    var t = filter.value.trim();
    if (!t) return null;
    if (t.length > 2 && t[0] === "/" && t[t.length - 1] === "/") {
      try {
        var re = new RegExp(t.slice(1, -1));
        return function (n) { return re.test(n); };
      } catch (err) {
        count.textContent = "not a regular expression: " + err.message;
        return function () { return false; };
      }
    }
    var low = t.toLowerCase();
    return function (n) { return n.toLowerCase().indexOf(low) >= 0; };
  }
  var cols = data.columns.length;
  function strip(states) {
    var out = "";
    for (var k = 0; k < data.sides.length; k++) {
      out += '<span class="strip" title="' + esc(data.sides[k]) + '">' +
        states.substr(k * cols, cols).split("").map(function (s, c) {
          return '<i class="' + (s === "-" ? "none" : s) + '" title="' + esc(data.sides[k] + " \u00b7 " +
            data.columns[c]) + ": " + words[s] + '"></i>';
        }).join("") + "</span>";
    }
    return out;
  }
  function render() {
    var m = matcher();
    var shown = 0, entries = 0, tensors = 0;
    var html = [];
    data.entries.forEach(function (e, i) {
      if (rowFilter >= 0 && e.row !== rowFilter) return;
      var hits = e.count;
      if (m) {
        hits = 0;
        eachName(e, function (n) { if (m(n)) hits++; });
        if (!hits) return;
      }
      entries++;
      tensors += hits;
      if (shown++ < LIMIT)
        html.push('<li data-entry="' + i + '">' + strip(e.states) + esc(e.name) +
                  (e.count > 1 ? ' <span class="none">(' + e.count + " tensors)</span>" : "") + "</li>");
    });
    list.innerHTML = html.join("");
    count.textContent = tensors + " tensors in " + entries + " entries" +
      (rowFilter >= 0 ? " of row \u201c" + data.rows[rowFilter] + "\u201d (clear the filter to see all)" : "") +
      (entries > LIMIT ? "; the first " + LIMIT + " shown" : "");
  }
  function showEntry(i) {
    var e = data.entries[i];
    var head = "<tr><th>at</th>";
    data.sides.forEach(function (side) {
      var who = data.sides.length > 1 ? esc(side) + ": " : "";
      head += "<th>" + who + "state</th><th>" + who + "decided by</th>";
    });
    var rows = data.columns.map(function (label, c) {
      var tr = "<tr><td>" + esc(label) + "</td>";
      for (var k = 0; k < data.sides.length; k++) {
        var at = k * cols + c;
        var r = e.rules[at] >= 0 ? data.rules[e.rules[at]] : null;
        tr += "<td>" + words[e.states[at]] + "</td><td>" +
          (r ? "<code>" + esc(r.where) + "</code> " + esc(r.action) + " \u2014 " + esc(r.text)
             : "no rule: the default (trainable)") + "</td>";
      }
      return tr + "</tr>";
    });
    prov.className = "";
    prov.innerHTML = "<h3>" + esc(e.name) + "</h3><p>" + e.count + " tensor" + (e.count > 1 ? "s" : "") +
      " \u00b7 row " + esc(data.rows[e.row]) + "</p><table><thead>" + head + "</tr></thead><tbody>" +
      rows.join("") + "</tbody></table>";
  }
  list.addEventListener("click", function (ev) {
    var li = ev.target.closest("li[data-entry]");
    if (!li) return;
    Array.prototype.forEach.call(list.querySelectorAll("li.selected"), function (x) { x.classList.remove("selected"); });
    li.classList.add("selected");
    showEntry(Number(li.getAttribute("data-entry")));
  });
  filter.addEventListener("input", function () {
    if (!filter.value) rowFilter = -1;
    render();
  });
  document.getElementById("picture").addEventListener("click", function (ev) {
    var cell = ev.target.closest("rect.lf-cell");
    if (!cell) return;
    Array.prototype.forEach.call(document.querySelectorAll("rect.lf-cell.selected"), function (x) { x.classList.remove("selected"); });
    cell.classList.add("selected");
    rowFilter = Number(cell.getAttribute("data-row"));
    var title = cell.querySelector("title");
    prov.className = "";
    prov.innerHTML = "<h3>" + esc(data.rows[rowFilter]) + " \u00b7 " + esc(data.columns[Number(cell.getAttribute("data-col"))]) +
      "</h3><p>" + esc(title ? title.textContent : "") + "</p><p>Its parameters are listed on the left; click one for its whole history.</p>";
    render();
  });
  render();
})();
</script>
)JS";
}

}  // namespace layerfreeze
