// The kernel explorer's interaction: tooltips on the graph's ops, a click on a kernel
// (graph box, op, table row, bar, roofline point) shows its code, sortable table
// columns, the unfused-grouping toggle, links to a kernel (#kernel=NAME), and a
// self-test (open the page with #selftest) that exercises all of it and writes a JSON
// report into #selftest-result.
(function () {
  'use strict';
  var tip = document.getElementById('tip');
  var detail = document.getElementById('detail');

  function kernelOf(el) {
    while (el && el !== document) {
      if (el.dataset && el.dataset.kernel) return el.dataset.kernel;
      el = el.parentNode;
    }
    return null;
  }

  function templateFor(name) {
    var ts = document.querySelectorAll('template[data-code]');
    for (var i = 0; i < ts.length; i++) if (ts[i].dataset.code === name) return ts[i];
    return null;
  }

  function show(name) {
    var t = templateFor(name);
    if (!t) return false;
    var c = t.content;
    document.getElementById('detail-name').textContent = name;
    document.getElementById('detail-meta').innerHTML = c.querySelector('.meta').innerHTML;
    ['loops', 'clif', 'asm'].forEach(function (cls) {
      detail.querySelector('pre.' + cls).textContent = c.querySelector('pre.' + cls).textContent;
    });
    detail.hidden = false;
    document.querySelectorAll('.selected').forEach(function (e) { e.classList.remove('selected'); });
    document.querySelectorAll('[data-kernel]').forEach(function (e) {
      if (e.dataset.kernel === name) e.classList.add('selected');
    });
    return true;
  }

  document.addEventListener('click', function (e) {
    if (e.target.closest && e.target.closest('#detail, th, label')) return;
    var name = kernelOf(e.target);
    if (name && show(name) && !e.selftest) detail.scrollIntoView({ behavior: 'smooth', block: 'start' });
  });

  document.addEventListener('mousemove', function (e) {
    var node = e.target.closest ? e.target.closest('[data-tip]') : null;
    if (!node) { tip.hidden = true; return; }
    tip.textContent = node.dataset.tip;
    tip.hidden = false;
    tip.style.left = (e.pageX + 14) + 'px';
    tip.style.top = (e.pageY + 14) + 'px';
  });

  // Sorting: numbers by data-v, text alphabetically; a second click reverses.
  var table = document.getElementById('kernel-table');
  function sortBy(th) {
    var col = Array.prototype.indexOf.call(th.parentNode.children, th);
    var numeric = th.dataset.type === 'num';
    var down = th.dataset.dir !== 'desc';
    th.parentNode.querySelectorAll('th').forEach(function (h) { delete h.dataset.dir; });
    th.dataset.dir = down ? 'desc' : 'asc';
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var x = a.cells[col].dataset.v, y = b.cells[col].dataset.v;
      var c = numeric ? parseFloat(x) - parseFloat(y) : (x < y ? -1 : x > y ? 1 : 0);
      return down ? -c : c;
    });
    rows.forEach(function (r) { body.appendChild(r); });
  }
  table.querySelectorAll('th').forEach(function (th) {
    th.addEventListener('click', function () { sortBy(th); });
  });

  document.getElementById('show-unfused').addEventListener('change', function (e) {
    document.body.classList.toggle('unfused', e.target.checked);
  });

  function selftest() {
    var report = { errors: window.__errors.slice() };
    var names = {};
    document.querySelectorAll('[data-kernel]').forEach(function (e) { names[e.dataset.kernel] = true; });
    report.kernels = Object.keys(names);
    report.rows = Array.prototype.map.call(table.tBodies[0].rows, function (r) { return r.dataset.kernel; });
    report.unfused = document.querySelectorAll('[data-unfused-kernel]').length;
    // Click the last row: the panel shows that kernel's CLIF.
    var last = table.tBodies[0].rows[table.tBodies[0].rows.length - 1];
    var ev = new MouseEvent('click', { bubbles: true });
    ev.selftest = true;
    last.cells[1].dispatchEvent(ev);
    var clif = detail.querySelector('pre.clif').textContent;
    report.clicked = last.dataset.kernel;
    report.shown = document.getElementById('detail-name').textContent;
    report.clif_shown = !detail.hidden && clif.indexOf('function ') >= 0;
    report.asm_shown = detail.querySelector('pre.asm').textContent.indexOf('block0:') >= 0;
    // Click an op in the graph: its kernel is shown.
    var op = document.querySelector('svg.graph .node[data-kernel]');
    op.dispatchEvent(new MouseEvent('click', { bubbles: true }));
    report.graph_click = document.getElementById('detail-name').textContent === op.dataset.kernel;
    // Sort by time (or FLOPs without timings), largest first.
    var key = document.body.dataset.timed === 'true' ? 'us' : 'flops';
    var th = table.querySelector('th[data-key="' + key + '"]');
    sortBy(th);
    var col = Array.prototype.indexOf.call(th.parentNode.children, th);
    var values = Array.prototype.map.call(table.tBodies[0].rows, function (r) { return parseFloat(r.cells[col].dataset.v); });
    report.sorted_by = key;
    report.sorted = values.every(function (v, i) { return i === 0 || values[i - 1] >= v; });
    report.sorted_values = values;
    document.getElementById('show-unfused').click();
    report.toggle = document.body.classList.contains('unfused');
    report.load_ms = performance.now();
    report.errors = window.__errors.slice();
    var out = document.getElementById('selftest-result');
    out.textContent = JSON.stringify(report);
    out.hidden = false;
  }
  // A link to one kernel: FILE.html#kernel=NAME opens its code.
  if (location.hash.indexOf('#kernel=') === 0) {
    var wanted = decodeURIComponent(location.hash.slice(8));
    if (show(wanted)) detail.scrollIntoView({ block: 'start' });
  }
  if (location.hash === '#selftest') {
    try { selftest(); } catch (e) {
      window.__errors.push('selftest: ' + e);
      var out = document.getElementById('selftest-result');
      out.textContent = JSON.stringify({ errors: window.__errors });
      out.hidden = false;
    }
  }
})();
