/* Per-image browser of report.html (frontalize). Plain ES2017, no library, nothing loaded from the network.
 *
 * Data: the JSON document in #report-data (layout: frontalize/evaluation/html_report.py). Rows are filtered into
 * an index array, sorted with typed-array keys and rendered one page at a time, so a 32,000-row report shows its
 * first rows and re-sorts quickly. Marks for measurements (performance.mark): "report:data-parsed" once the data
 * is parsed, "report:first-rows" once the first page is in the DOM, "report:first-paint" after the frame that
 * shows it, "report:rendered" after each later render is painted; body[data-ready="1"] once interactive.
 */
(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("report-data").textContent);
  performance.mark("report:data-parsed");
  var R = data.rows, N = R.n, images = data.images, trees = data.trees;
  var $ = function (id) { return document.getElementById(id); };

  // ---- columns -------------------------------------------------------------------------------------------------
  var num = {};
  data.numeric.forEach(function (name) {
    var src = R[name], out = new Float64Array(N);
    for (var i = 0; i < N; i++) { out[i] = src[i] === null ? NaN : src[i]; }
    num[name] = out;
  });
  var absYaw = new Float64Array(N);
  for (var k = 0; k < N; k++) { absYaw[k] = Math.abs(num.yaw[k]); }
  var SORT_KEYS = { gain: num.gain, sim_frontal_gt: num.sim_frontal_gt, sim_angle_gt: num.sim_angle_gt,
    abs_yaw: absYaw, pitch: num.pitch };
  var codes = {};
  Object.keys(R).forEach(function (name) {
    if (R[name] && R[name].codes) { codes[name] = Int32Array.from(R[name].codes); }
  });
  var ref = { a: Int32Array.from(R.a), f: Int32Array.from(R.f), g: Int32Array.from(R.g) };
  function text(name, i) { var c = codes[name][i]; return c < 0 ? null : R[name].values[c]; }
  function codeOf(name, value) { return R[name].values.indexOf(value); }

  // ---- status filters: [key, label, predicate] -----------------------------------------------------------------
  function is(name, value) { var c = codeOf(name, value), col = codes[name]; return function (i) { return col[i] === c; }; }
  function either(p, q) { return function (i) { return p(i) || q(i); }; }
  var inferenceOk = [codeOf("inference_status", "ok"), codeOf("inference_status", "skipped_existing")];
  var STATUS = [
    ["paired", "paired (face in both arms and the GT)", is("pair_status", "paired")],
    ["angle_only", "face only in the angled image", is("pair_status", "angle_only")],
    ["frontal_only", "face only in the frontalized image", is("pair_status", "frontal_only")],
    ["neither", "face in neither arm", is("pair_status", "neither")],
    ["no_face_angle", "no face in angled", is("angle_detection", "no_face")],
    ["no_face_frontal", "no face in frontal", is("frontal_detection", "no_face")],
    ["no_output", "no frontalized output", is("frontal_detection", "no_output")],
    ["retry_angle", "angled face found only after padding/retry", is("angle_detection", "found_retry")],
    ["retry_frontal", "frontal face found only after padding/retry", is("frontal_detection", "found_retry")],
    ["unreadable", "unreadable image", either(is("angle_detection", "unreadable"), is("frontal_detection", "unreadable"))],
    ["inference_failed", "inference failed (manifest)", function (i) {
      var c = codes.inference_status[i]; return c >= 0 && inferenceOk.indexOf(c) < 0; }],
    ["guard_fallback", "identity guard fell back", is("guard_fallback", "true")],
    ["synthetic", "synthetic image (rendered posed view)", is("synthetic", "true")],
    ["pose_unfit", "pose: landmarks could not be fitted", is("pose_status", "unfit")],
    ["no_face_gt", "GT has no face", is("pair_status", "no_face_gt")],
    ["no_gt", "subject has no GT", is("pair_status", "no_gt")]
  ];
  var statusByKey = {};
  STATUS.forEach(function (s) { statusByKey[s[0]] = s[2]; });

  // ---- state ---------------------------------------------------------------------------------------------------
  var state = { subject: -1, tree: -1, combination: -1, bin: "", status: "", sort: "", dir: 1, page: 0,
    size: data.page_size };
  var view = new Int32Array(0);

  function filterRows() {
    var subj = state.subject, tree = state.tree, comb = state.combination, pred = statusByKey[state.status];
    var binCol = null, binCode = -1;
    if (state.bin) { var parts = state.bin.split(":"); binCol = codes[parts[0]]; binCode = +parts[1]; }
    var cs = codes.subject, ct = codes.arm, cc = codes.combination;
    var out = new Int32Array(N), n = 0;
    for (var i = 0; i < N; i++) {
      if (subj >= 0 && cs[i] !== subj) continue;
      if (tree >= 0 && ct[i] !== tree) continue;
      if (comb >= 0 && cc[i] !== comb) continue;
      if (binCol && binCol[i] !== binCode) continue;
      if (pred && !pred(i)) continue;
      out[n++] = i;
    }
    return out.subarray(0, n);
  }

  // Sort: each row's key becomes an integer rank (the values carry a fixed number of decimals, data.digits), packed
  // with the row index into one float64 (rank * 2^21 + index, exact below 2^53) and sorted by the engine's native
  // numeric sort — several times faster than a comparator callback at 32,000 rows. Missing values (NaN) get the
  // highest rank in both directions (always last); ties keep dataset order. Ranks are computed once per key.
  var SORT_DIGITS = { gain: "gain", sim_frontal_gt: "sim_frontal_gt", sim_angle_gt: "sim_angle_gt", abs_yaw: "yaw",
    pitch: "pitch" };
  var ROW_SPAN = 2097152, ranks = {};
  function rankOf(key) {
    if (ranks[key]) return ranks[key];
    var col = SORT_KEYS[key], scale = Math.pow(10, data.digits[SORT_DIGITS[key]]), lo = Infinity, hi = -Infinity;
    for (var i = 0; i < N; i++) { var v = col[i]; if (v === v) { if (v < lo) lo = v; if (v > hi) hi = v; } }
    var top = hi >= lo ? Math.round((hi - lo) * scale) + 1 : 0, r = new Float64Array(N);
    for (var j = 0; j < N; j++) { var w = col[j]; r[j] = w === w ? Math.round((w - lo) * scale) : top; }
    ranks[key] = { r: r, top: top, packable: N < ROW_SPAN && top < 4294967296 };
    return ranks[key];
  }
  function sortRows(rows) {
    var key = SORT_KEYS[state.sort];
    if (!key) return rows;
    var dir = state.dir, rank = rankOf(state.sort), n = rows.length;
    if (!rank.packable) {
      return rows.slice().sort(function (a, b) {
        var x = key[a], y = key[b], xn = x !== x, yn = y !== y;
        if (xn || yn) return xn === yn ? a - b : (xn ? 1 : -1);
        return (x - y) * dir || a - b;
      });
    }
    var packed = new Float64Array(n), r = rank.r, top = rank.top;
    for (var j = 0; j < n; j++) {
      var i = rows[j], k = r[i];
      if (dir < 0 && k !== top) k = top - 1 - k;
      packed[j] = k * ROW_SPAN + i;
    }
    packed.sort();
    var out = new Int32Array(n);
    for (var m = 0; m < n; m++) out[m] = packed[m] % ROW_SPAN;
    return out;
  }

  // ---- rendering -----------------------------------------------------------------------------------------------
  var ESC = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" };
  function esc(s) { return String(s).replace(/[&<>"']/g, function (c) { return ESC[c]; }); }
  function fmt(v, digits, signed) {
    if (v !== v) return "–";
    return (signed && v > 0 ? "+" : "") + v.toFixed(digits);
  }
  function thumb(img, cls, label) {
    if (img < 0) return '<span class="noimg">' + esc(label) + "</span>";
    var t = images.thumb[img];
    if (!t) return '<span class="noimg">no preview</span>';
    return '<img class="' + cls + '" loading="lazy" decoding="async" alt="" src="' + esc(t) + '" title="' +
      esc(images.name[img]) + '">';
  }
  function badges(i) {
    var out = [], st = text("pair_status", i);
    if (st && st !== "paired") out.push('<span class="badge warn">' + esc(st.replace(/_/g, " ")) + "</span>");
    var a = text("angle_detection", i), f = text("frontal_detection", i);
    if (a && a !== "found") out.push('<span class="badge ' + (a === "found_retry" ? "" : "bad") + '">angled: ' + esc(a.replace(/_/g, " ")) + "</span>");
    if (f && f !== "found") out.push('<span class="badge ' + (f === "found_retry" ? "" : "bad") + '">frontal: ' + esc(f.replace(/_/g, " ")) + "</span>");
    var inf = text("inference_status", i);
    if (inf && inf !== "ok" && inf !== "skipped_existing") out.push('<span class="badge bad">inference: ' + esc(inf) + "</span>");
    var g = text("guard_candidate", i);
    if (g) out.push('<span class="badge">guard: ' + esc(g) + (text("guard_fallback", i) === "true" ? " (fallback)" : "") + "</span>");
    if (!out.length) out.push('<span class="badge">paired</span>');
    if (text("synthetic", i) === "true") out.push('<span class="badge">synthetic</span>');
    if (text("pose_status", i) === "unfit") out.push('<span class="badge warn">pose: no fit</span>');
    return out.join("");
  }
  function others(i) {
    var byTree = data.frontal_by_rel[codes.rel[i]], mine = trees.indexOf(text("arm", i)), html = "";
    for (var t = 0; t < trees.length; t++) {
      if (t === mine) continue;
      html += "<figure>" + thumb(byTree[t], "thumb small", "none") + "<figcaption>" + esc(trees[t]) + "</figcaption></figure>";
    }
    return '<td><div class="others">' + html + "</div></td>";
  }
  function rowHtml(i, rank) {
    var gain = num.gain[i], cls = gain > 0 ? "pos" : (gain < 0 ? "neg" : "");
    return '<tr data-row="' + i + '"><td class="num">' + (rank + 1) + "</td>" +
      "<td>" + thumb(ref.a[i], "thumb", "no image") + "</td>" +
      "<td>" + thumb(ref.f[i], "thumb", "no output") + "</td>" +
      (trees.length > 1 ? others(i) : "") +
      "<td>" + thumb(ref.g[i], "thumb", "no GT") + "</td>" +
      '<td class="name">' + esc(text("rel", i)) + "<small>" + esc(text("subject", i)) + "</small></td>" +
      "<td>" + esc(text("arm", i)) + "</td><td>" + esc(text("combination", i)) + "</td>" +
      '<td class="num">' + fmt(absYaw[i], 1) + '</td><td class="num">' + fmt(num.pitch[i], 1, true) + "</td>" +
      '<td class="num">' + fmt(num.sim_angle_gt[i], 3) + '</td><td class="num">' + fmt(num.sim_frontal_gt[i], 3) + "</td>" +
      '<td class="num ' + cls + '">' + fmt(gain, 3, true) + "</td><td>" + badges(i) + "</td></tr>";
  }
  var HEAD = [["", "#"], ["", "Angled"], ["", "Frontalized"]].concat(trees.length > 1 ? [["", "Other trees"]] : [])
    .concat([["", "GT"], ["", "Image / subject"], ["", "Tree"], ["", "Combination"], ["abs_yaw", "|yaw|"],
      ["pitch", "pitch"], ["sim_angle_gt", "cos(A,GT)"], ["sim_frontal_gt", "cos(F,GT)"], ["gain", "gain"],
      ["", "Status"]]);
  function renderHead() {
    $("rows-head").innerHTML = HEAD.map(function (h) {
      if (!h[0]) return "<th>" + esc(h[1]) + "</th>";
      var sort = state.sort === h[0] ? (state.dir > 0 ? "ascending" : "descending") : "none";
      return '<th data-sort="' + h[0] + '" aria-sort="' + sort + '" title="sort">' + esc(h[1]) + "</th>";
    }).join("");
  }
  function pages() { return Math.max(1, Math.ceil(view.length / state.size)); }
  function render() {
    state.page = Math.min(state.page, pages() - 1);
    var start = state.page * state.size, end = Math.min(view.length, start + state.size), html = "";
    for (var p = start; p < end; p++) html += rowHtml(view[p], p);
    $("rows-body").innerHTML = html;
    $("page-info").textContent = view.length ? "rows " + (start + 1) + "–" + end + " of " + view.length +
      " · page " + (state.page + 1) + " of " + pages() : "no row matches";
    $("summary").textContent = view.length + " of " + N + " rows (one per output tree × combination × angled image)";
    renderHead();
    requestAnimationFrame(function () { setTimeout(function () { performance.mark("report:rendered"); }, 0); });
  }
  function refresh(refilter) {
    if (refilter) view = filterRows();
    view = sortRows(view);
    state.page = 0;
    render();
  }

  // ---- controls ------------------------------------------------------------------------------------------------
  function fill(select, options) {
    select.insertAdjacentHTML("beforeend", options.map(function (o) {
      return '<option value="' + esc(o[0]) + '">' + esc(o[1]) + "</option>";
    }).join(""));
  }
  function counted(name) {
    var counts = new Int32Array(R[name].values.length), col = codes[name];
    for (var i = 0; i < N; i++) if (col[i] >= 0) counts[col[i]]++;
    return R[name].values.map(function (v, c) { return [c, v + " (" + counts[c] + ")"]; });
  }
  function setupControls() {
    fill($("filter-subject"), counted("subject").sort(function (a, b) {
      return R.subject.values[a[0]] < R.subject.values[b[0]] ? -1 : 1; }));
    fill($("filter-tree"), counted("arm"));
    fill($("filter-combination"), counted("combination"));
    var bins = "";
    [["yaw_bin", "|yaw|"], ["pitch_bin", "pitch"]].forEach(function (axis) {
      var opts = counted(axis[0]).map(function (o) { return [axis[0] + ":" + o[0], axis[1] + " " + o[1]]; });
      bins += '<optgroup label="' + axis[1] + '">' + opts.map(function (o) {
        return '<option value="' + esc(o[0]) + '">' + esc(o[1]) + "</option>"; }).join("") + "</optgroup>";
    });
    $("filter-bin").insertAdjacentHTML("beforeend", bins);
    fill($("filter-status"), STATUS.map(function (s) {
      var n = 0; for (var i = 0; i < N; i++) if (s[2](i)) n++;
      return [s[0], s[1] + " (" + n + ")", n];
    }).filter(function (s) { return s[2] > 0; }));
    var sizes = [25, 50, 100, 200, 500, 1000];
    if (sizes.indexOf(state.size) < 0) sizes.push(state.size);
    fill($("page-size"), sizes.sort(function (a, b) { return a - b; }).map(function (s) { return [s, s]; }));
    $("page-size").value = String(state.size);
    [["filter-subject", "subject"], ["filter-tree", "tree"], ["filter-combination", "combination"]].forEach(function (f) {
      $(f[0]).addEventListener("change", function (e) { state[f[1]] = e.target.value === "" ? -1 : +e.target.value; refresh(true); });
    });
    $("filter-bin").addEventListener("change", function (e) { state.bin = e.target.value; refresh(true); });
    $("filter-status").addEventListener("change", function (e) { state.status = e.target.value; refresh(true); });
    $("sort-key").addEventListener("change", function (e) { setSort(e.target.value, state.dir); });
    $("sort-dir").addEventListener("change", function (e) { setSort(state.sort, +e.target.value); });
    $("page-size").addEventListener("change", function (e) { state.size = +e.target.value; state.page = 0; render(); });
    $("reset").addEventListener("click", function () {
      ["filter-subject", "filter-tree", "filter-combination", "filter-bin", "filter-status", "sort-key"].forEach(function (id) { $(id).value = ""; });
      state.subject = state.tree = state.combination = -1; state.bin = state.status = state.sort = ""; state.dir = 1;
      $("sort-dir").value = "1"; view = filterRows(); state.page = 0; render();
    });
    $("rows-head").addEventListener("click", function (e) {
      var th = e.target.closest("th[data-sort]");
      if (!th) return;
      var key = th.getAttribute("data-sort");
      setSort(key, state.sort === key ? -state.dir : 1);
    });
    $("rows-body").addEventListener("click", function (e) {
      var tr = e.target.closest("tr[data-row]");
      if (tr) openViewer(+tr.getAttribute("data-row"));
    });
    function go(page) { state.page = Math.max(0, Math.min(pages() - 1, page)); render(); window.scrollTo(0, 0); }
    $("page-first").addEventListener("click", function () { go(0); });
    $("page-prev").addEventListener("click", function () { go(state.page - 1); });
    $("page-next").addEventListener("click", function () { go(state.page + 1); });
    $("page-last").addEventListener("click", function () { go(pages() - 1); });
  }
  function setSort(key, dir) {
    state.sort = key; state.dir = dir;
    $("sort-key").value = key; $("sort-dir").value = String(dir);
    if (!key) { view = filterRows(); state.page = 0; render(); return; }
    refresh(false);
  }

  // ---- enlarged view -------------------------------------------------------------------------------------------
  var current = -1;
  function bigImage(img, caption) {
    if (img < 0) return "<figure><span class=\"noimg\" style=\"width:200px;height:200px\">" + esc(caption) + ": none</span></figure>";
    var src = images.src[img] || images.thumb[img] || "";
    return '<figure><img alt="' + esc(caption) + '" data-thumb="' + esc(images.thumb[img] || "") + '" src="' + esc(src) +
      '"><figcaption>' + esc(caption) + " · " + esc(images.name[img]) + "</figcaption></figure>";
  }
  function openViewer(i) {
    current = i;
    $("viewer-title").textContent = text("rel", i) + " · " + text("subject", i) + " · " + text("arm", i) + " · " + text("combination", i);
    $("viewer-images").innerHTML = bigImage(ref.a[i], "Angled") + bigImage(ref.f[i], "Frontalized (" + text("arm", i) + ")") +
      bigImage(ref.g[i], "GT");
    Array.prototype.forEach.call($("viewer-images").querySelectorAll("img"), function (img) {
      img.addEventListener("error", function () {  // original not reachable (copied report): show the thumbnail
        var t = img.getAttribute("data-thumb");
        if (t && img.getAttribute("src") !== t) { img.src = t; img.nextSibling.textContent += " (thumbnail)"; }
      });
    });
    var fields = "";
    Object.keys(R).forEach(function (name) {
      if (name === "n" || name.length === 1) return;
      var v = codes[name] ? text(name, i) : (num[name] ? num[name][i] : null);
      if (typeof v === "number") v = v === v ? String(v) : null;
      fields += "<dt>" + esc(name) + "</dt><dd>" + (v === null ? "–" : esc(v)) + "</dd>";
    });
    $("viewer-fields").innerHTML = fields;
    $("viewer").hidden = false;
    $("viewer-close").focus();
  }
  function step(delta) {
    var at = Array.prototype.indexOf.call(view, current);
    if (at < 0) return;
    var next = at + delta;
    if (next < 0 || next >= view.length) return;
    openViewer(view[next]);
  }
  function closeViewer() { $("viewer").hidden = true; current = -1; }
  $("viewer-close").addEventListener("click", closeViewer);
  $("viewer-prev").addEventListener("click", function () { step(-1); });
  $("viewer-next").addEventListener("click", function () { step(1); });
  $("viewer").addEventListener("click", function (e) { if (e.target === $("viewer")) closeViewer(); });
  document.addEventListener("keydown", function (e) {
    if ($("viewer").hidden) return;
    if (e.key === "Escape") closeViewer();
    else if (e.key === "ArrowLeft") step(-1);
    else if (e.key === "ArrowRight") step(1);
  });

  // ---- tabs ----------------------------------------------------------------------------------------------------
  function showTab() {
    var tab = location.hash === "#report" ? "report" : "images";
    $("tab-images").hidden = tab !== "images";
    $("tab-report").hidden = tab !== "report";
    Array.prototype.forEach.call(document.querySelectorAll(".tab"), function (a) {
      a.classList.toggle("active", a.getAttribute("data-tab") === tab);
    });
  }
  window.addEventListener("hashchange", showTab);

  // ---- start ---------------------------------------------------------------------------------------------------
  showTab();
  view = filterRows();
  render();
  performance.mark("report:first-rows");
  setupControls();
  requestAnimationFrame(function () {
    setTimeout(function () { performance.mark("report:first-paint"); document.body.setAttribute("data-ready", "1"); }, 0);
  });
})();
