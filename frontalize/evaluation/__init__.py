"""Evaluation: identity preservation of frontalized images (is Frontal↔GT more similar than Angle↔GT?).

Modules, in the order a run uses them:

* :mod:`.runner` — ``evaluate(cfg, inputs, ...)``: weights check, dataset, output trees, embedding pass, report;
* :mod:`.trees` — match each ``--frontal-dir`` (and its variant sub-trees) to the angled inputs;
* :mod:`.embed` / :mod:`.cache` — detection + embedding pass over unique images, cached by content hash and
  model fingerprint; :class:`~.embed.EmbedBatch` is the per-batch work any executor can drive;
* :mod:`.poses` — every pose source (annotation, rendered, 1k3d68, the 68-point model, the keypoint proxy) in the
  project's one convention; :mod:`.pose_error` — the pose line of the report and the estimators' error against
  known poses (Table 7);
* :mod:`.pairing` — per-record Angle↔GT / Frontal↔GT similarities and outcome counts (a missing face is counted,
  never scored 0);
* :mod:`.metrics`, :mod:`.stats`, :mod:`.posecues` — pure numpy/scipy/sklearn functions;
* :mod:`.analysis` — the report's numbers; :mod:`.tables`, :mod:`.figures`, :mod:`.figure_plan`, :mod:`.report`
  — Markdown/CSV/JSON tables, PNG figures, ``report.md`` and ``summary.json`` (extensible with report sections);
* :mod:`.guard_report`, :mod:`.guard_figures` — the identity guard's section: guarded vs unguarded trees and the
  identity/frontality trade-off.
* :mod:`.per_image`, :mod:`.thumbs`, :mod:`.html_report` — ``per_image.csv``/``.jsonl`` (one row per output tree ×
  combination × angled image) and the GT table, face thumbnails, and ``report.html`` (the report plus a per-image
  browser; page assets in ``assets/``).
"""
