/* guidebot admin: sortable tables and the date range presets. Plain JS, no outside requests. */
(function () {
  "use strict";

  // ---- tables with class "sortable": click (or Enter on) a header to sort by that column ----
  function cellValue(row, index) {
    var cell = row.cells[index];
    if (!cell) return "";
    return cell.hasAttribute("data-value") ? cell.getAttribute("data-value") : cell.textContent.trim();
  }
  function compare(a, b, numeric) {
    if (numeric) {
      var x = a === "" ? -Infinity : parseFloat(a.replace(/[^0-9.\-]/g, ""));
      var y = b === "" ? -Infinity : parseFloat(b.replace(/[^0-9.\-]/g, ""));
      return x - y;
    }
    return a.localeCompare(b, document.documentElement.lang || "zh-CN");
  }
  function sortBy(table, th, index) {
    var body = table.tBodies[0];
    if (!body) return;
    var rows = Array.prototype.slice.call(body.rows).filter(function (r) { return r.cells.length > 1; });
    if (rows.length < 2) return;
    var ascending = th.getAttribute("aria-sort") !== "ascending";
    var numeric = th.classList.contains("num");
    rows.sort(function (r1, r2) {
      var order = compare(cellValue(r1, index), cellValue(r2, index), numeric);
      return ascending ? order : -order;
    });
    Array.prototype.forEach.call(th.parentNode.cells, function (other) { other.removeAttribute("aria-sort"); });
    th.setAttribute("aria-sort", ascending ? "ascending" : "descending");
    rows.forEach(function (r) { body.appendChild(r); });
  }
  Array.prototype.forEach.call(document.querySelectorAll("table.sortable"), function (table) {
    if (!table.tHead) return;
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th, index) {
      th.tabIndex = 0;
      th.classList.add("sort");
      th.addEventListener("click", function () { sortBy(table, th, index); });
      th.addEventListener("keydown", function (e) { if (e.key === "Enter") sortBy(table, th, index); });
    });
  });

  // ---- date range presets: today, this week (from Monday), this month, the last 30 days ----
  function iso(d) {
    var m = d.getUTCMonth() + 1, day = d.getUTCDate();
    return d.getUTCFullYear() + "-" + (m < 10 ? "0" : "") + m + "-" + (day < 10 ? "0" : "") + day;
  }
  function range(preset, today) {
    var t = new Date(today + "T00:00:00Z"), from = new Date(t.getTime());
    if (preset === "week") from.setUTCDate(t.getUTCDate() - ((t.getUTCDay() + 6) % 7));
    else if (preset === "month") from.setUTCDate(1);
    else if (preset === "last30") from.setUTCDate(t.getUTCDate() - 29);
    return [iso(from), iso(t)];
  }
  Array.prototype.forEach.call(document.querySelectorAll("button.preset"), function (button) {
    button.addEventListener("click", function () {
      var form = button.form || button.closest("form");
      var picked = range(button.getAttribute("data-preset"), button.getAttribute("data-today"));
      form.elements["from"].value = picked[0];
      form.elements["to"].value = picked[1];
      form.submit();
    });
  });
})();
