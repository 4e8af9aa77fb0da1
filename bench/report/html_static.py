"""The report page's inline style sheet and script (no external URL of any kind: the page works offline).

Layout invariants: the page never scrolls sideways at 1024 px or wider; a table wider than its column scrolls
inside its own ``.scroll`` box (its first column stays in view); a dataset's MMHM bounds sit in a side column
beside its MMHM tables when the window is wide and above them when it is not; figures shrink to the column.

Script behaviour (all in one IIFE, no globals):
- ``table.sortable``: clicking a header sorts by that column (numbers by ``data-v``, text otherwise), toggling
  ascending / descending (``aria-sort``); missing values (empty ``data-v``) stay last in either direction.
- ``#filter`` filters the sweep table: every whitespace-separated term must occur in a row's text (case-blind);
  ``#filter-count`` says how many rows are shown.
- ``select.classfilter`` (one per sample grid) shows only the sample columns (``[data-class]``) of one class.
- a row's provenance opens with its ``<details>`` (the key cell).
"""

CSS = """
*{box-sizing:border-box}[id]{scroll-margin-top:40px}
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#1d2329;background:#fafbfc}
main{max-width:1680px;margin:0 auto;padding:12px 20px 60px}
h1{font-size:24px;margin:8px 0 4px}h2{margin-top:36px;border-bottom:2px solid #d8dee4;padding-bottom:4px}
h3{margin:22px 0 6px}h4{margin:14px 0 4px}
nav{position:sticky;top:0;background:#24292f;padding:6px 20px;z-index:3;display:flex;flex-wrap:wrap;gap:4px 16px}
nav a{color:#fff;text-decoration:none;font-weight:600}nav a:hover{text-decoration:underline}
nav a.navds{font-weight:400;color:#d0d7de}
.meta{color:#57606a}.meta code{font-size:12px}
.headline{background:#fff;border:1px solid #d0d7de;border-left:5px solid #0969da;padding:8px 16px;margin:12px 0;
  max-width:1100px}
.headline li{margin:3px 0}.headline h2{margin:6px 0 4px;font-size:18px;border:0}
table{border-collapse:collapse;margin:6px 0 10px;background:#fff;font-size:13px}
th,td{border:1px solid #d0d7de;padding:3px 7px;text-align:right;vertical-align:top;white-space:nowrap}
th{background:#f0f3f6;white-space:normal;min-width:3.5em;vertical-align:bottom}
td.t,th.t{text-align:left}
table.sortable th{cursor:pointer;user-select:none}
table.sortable th:hover{background:#dde4ea}
th[aria-sort=ascending]::after{content:" ▲"}th[aria-sort=descending]::after{content:" ▼"}
tbody tr:nth-child(even){background:#f6f8fa}
.na{color:#8c959f}
.m{background:#eef5ff}.f{background:#fff4e8}
td.agree{text-align:center}
td.best{font-weight:700}
sup.tie,sup.flag{font-size:10px;margin-left:1px;cursor:help}
sup.tie{color:#0969da}sup.flag{color:#b42318}
table.lb,table.compact{font-size:12.5px}
table.lb td,table.lb th,table.compact td,table.compact th{padding:2px 5px}small.fam{color:#57606a;font-size:11px}
table.lb td:first-child,table.lb th:first-child{position:sticky;left:0;z-index:1;background:#fff}
.fair-section table tr>:first-child{position:sticky;left:0;z-index:1;background:#fff}
table.lb td.cfgt{white-space:normal;min-width:7em;max-width:11em}
.badge{display:inline-block;padding:0 6px;border-radius:8px;font-size:11px;font-weight:700}
.badge.no{background:#fde2e1;color:#b42318}.badge.yes{background:#dcf3e3;color:#1a7f37}
tr.failed{background:#fff0f0!important}
td.err{white-space:pre-wrap;text-align:left;max-width:700px;color:#b42318;font-family:ui-monospace,monospace;font-size:12px}
.note{background:#fff8c5;border:1px solid #e3d38c;padding:8px 12px;border-radius:6px;max-width:1100px}
.ok-note{background:#dcf3e3;border-color:#9fd4ad}
.legend{color:#57606a;font-size:12.5px;max-width:1100px}
.ds{display:grid;grid-template-columns:minmax(0,1fr) auto;gap:0 20px;align-items:start}
.ds>div{min-width:0}
.ds>aside{position:sticky;top:44px;width:max-content;max-width:380px;background:#fff;border:1px solid #d0d7de;
  padding:6px 10px;font-size:12.5px;margin-top:10px;max-height:calc(100vh - 60px);overflow:auto}
.ds>aside table{font-size:12px}
@media (max-width:1279px){.ds{display:flex;flex-direction:column-reverse;align-items:stretch}
  .ds>aside{position:static;max-height:none;width:auto;max-width:760px;align-self:flex-start}}
.pair{display:flex;flex-wrap:wrap;gap:0 24px;align-items:flex-start}.pair>div{min-width:0;max-width:100%}
figure{margin:10px 10px 26px 0;background:#fff;border:1px solid #d0d7de;padding:8px;display:inline-block;
  max-width:100%;vertical-align:top}
figure img{max-width:100%;height:auto;display:block}
figcaption{color:#57606a;font-size:12.5px;margin-top:4px;max-width:900px}
table.grid td{vertical-align:middle;padding:1px 6px}
table.grid td.tile,table.grid th.tile{padding:1px;text-align:center;min-width:0}
table.grid th.tile{font-size:11px;font-weight:400;color:#57606a;max-width:120px;white-space:normal;
overflow-wrap:anywhere;vertical-align:bottom}
table.grid img{image-rendering:pixelated;display:block}
details.gd summary{cursor:pointer}details.gd summary h3{display:inline-block}
td details summary{cursor:pointer;color:#0969da;font-family:ui-monospace,monospace;font-size:12px}
td details pre{text-align:left;white-space:pre-wrap;word-break:break-all;width:460px;max-width:80vw;font-size:11px;
  background:#f6f8fa;padding:6px;margin:4px 0}
input#filter{padding:4px 8px;width:320px;max-width:100%;margin:6px 0}
.scroll,.fair-section{overflow-x:auto;max-width:100%}
.mmhm-bounds caption{text-align:left;font-weight:600;padding-bottom:2px}
"""

JS = """
(function(){
  function val(row, i){var c=row.cells[i]; if(!c) return ''; return c.hasAttribute('data-v') ? c.getAttribute('data-v')
    : c.textContent.trim();}
  document.querySelectorAll('table.sortable').forEach(function(t){
    var head=t.tHead.rows[t.tHead.rows.length-1];
    Array.prototype.forEach.call(head.cells, function(th, i){
      th.title = th.title || 'click to sort (missing values stay last)';
      th.addEventListener('click', function(){
        var dir = th.getAttribute('aria-sort')==='ascending' ? 'descending' : 'ascending';
        Array.prototype.forEach.call(head.cells, function(h){h.removeAttribute('aria-sort');});
        th.setAttribute('aria-sort', dir);
        var body=t.tBodies[0], rows=Array.prototype.slice.call(body.rows), s = dir==='ascending' ? 1 : -1;
        rows.sort(function(a, b){
          var x=val(a,i), y=val(b,i);
          if(x==='' || y==='') return (x==='') - (y==='');
          var nx=Number(x), ny=Number(y);
          var c = (!isNaN(nx) && !isNaN(ny)) ? nx-ny : x.localeCompare(y);
          return s*c;
        });
        rows.forEach(function(r){body.appendChild(r);});
      });
    });
  });
  var f=document.getElementById('filter'), n=document.getElementById('filter-count');
  if(f) f.addEventListener('input', function(){
    var terms=f.value.toLowerCase().split(/\\s+/).filter(Boolean), shown=0, rows=document.querySelectorAll(
      '#sweep-table tbody tr');
    rows.forEach(function(r){
      var text=r.textContent.toLowerCase(), ok=terms.every(function(q){return text.indexOf(q) >= 0;});
      r.style.display = ok ? '' : 'none'; shown += ok ? 1 : 0;});
    if(n) n.textContent = terms.length ? shown + ' of ' + rows.length + ' rows shown' : rows.length + ' rows';
  });
  document.querySelectorAll('select.classfilter').forEach(function(s){
    var grid=document.getElementById(s.getAttribute('data-grid'));
    s.addEventListener('change', function(){
      grid.querySelectorAll('[data-class]').forEach(function(c){
        c.style.display = (s.value==='' || c.getAttribute('data-class')===s.value) ? '' : 'none';});
    });
  });
})();
"""
