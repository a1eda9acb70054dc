"""The attacker: how much can a reader of the whole release learn about each protected cell?

A release is every pack published together (NCL and the five boroughs). A reader has all of them.
For every suppressed cell and every rounded count the audit solves, by linear programming over all
published tables and the relations between their cells, the smallest and largest value the cell can
take given everything published:

* each published count is known to lie within its rounding interval (a published 10 is 8..12 when
  counts 1..7 are suppressed and others rounded to the nearest 5; a published 0 is exactly 0);
* a suppressed cell is at least 1 (zeros are shown);
* every relation between cells that :mod:`spstudy.publish.cells` derives from their keys holds: totals and
  margins (a parent is the sum of its children: practice < PCN < borough < NCL, ward < borough,
  detailed ethnic category < Census group < recorded < all, the outcomes of a referral ...), the
  same cell in another table or another area's pack (one variable), and
* every published rate or percentage that is *not* what the published count and denominator give
  (i.e. computed from an unrounded count) adds the count it implies, at its printed precision, as
  a constraint: rate x denominator is the attack that undoes rounding.

The reader is assumed to know what the marks say: a [c] in a table whose disclosure record shows no
secondary suppression is a count from 1 to ``threshold``; otherwise it is at least 1. (Building the
release, :func:`spstudy.publish.disclosure.protect` assumes more: that the reader knows, cell by cell, which
[c] is a small count and which was suppressed to protect one.) The release fails when a suppressed
cell can be narrowed to fewer than :attr:`~spstudy.publish.disclosure.Rules.protection_values` possible
values (4 with the default threshold 7: more than half of 1..7 stay possible), or a rounded count
to a single value. The
report names the cell, its interval and the tables that pin it.

What the audit does not consider (and the README says so): relations it is not told about (two
measures that are secretly the same population), non-linear inversions (the Dobson interval of a
standardised rate, a model coefficient), knowledge from outside the release (knowing a person), and
integer reasoning beyond counting the integers inside each LP interval (the LP relaxation can be
wider than what an integer programme finds; the threshold margin absorbs the usual gap).

HiGHS (through its Python interface ``highspy``) solves the LPs; one model per connected group of
related cells, re-solved with a new objective for each cell (warm-started).
"""

from __future__ import annotations

import json
import math
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from spstudy.publish import cells as C

INF = math.inf


@dataclass
class Interval:
    lo: float
    hi: float

    def n_integers(self) -> float:
        if self.hi == INF:
            return INF
        return math.floor(self.hi + 1e-7) - math.ceil(self.lo - 1e-7) + 1

    @property
    def width(self) -> float:
        return self.hi - self.lo


@dataclass
class Problem:
    """Variables (cell keys) with bounds, and linear relations between them."""

    bounds: dict = field(default_factory=dict)        # key -> (lo, hi)
    equalities: list = field(default_factory=list)    # (parent, children, exact)
    sources: dict = field(default_factory=dict)       # key -> set of "area/table" where the cell is published
    extra: list = field(default_factory=list)         # (coeffs {key: a}, lo, hi): linear constraints from leaky rates

    def variable(self, key, lo=0.0, hi=INF):
        if key in self.bounds:
            a, b = self.bounds[key]
            self.bounds[key] = (max(a, lo), min(b, hi))
        else:
            self.bounds[key] = (lo, hi)


def reduce(problem: Problem, keep: set) -> Problem:
    """An equivalent, smaller problem for the cells in ``keep``: a relation whose total is an unknown
    appearing nowhere else constrains nothing (drop it); an unknown child appearing nowhere else turns
    "total = sum of children" into "total >= sum of the others". Repeated until nothing changes."""
    rels = [(p, list(ch), exact) for p, ch, exact in problem.equalities]
    extra_vars = {k for coeffs, _, _ in problem.extra for k in coeffs}
    occ: dict = {}
    for p, ch, _ in rels:
        for k in (p, *ch):
            occ[k] = occ.get(k, 0) + 1

    def free(k):
        return k not in keep and k not in extra_vars and problem.bounds.get(k, (0.0, INF)) == (0.0, INF) and occ.get(k, 0) <= 1

    changed = True
    while changed:
        changed = False
        out = []
        for p, ch, exact in rels:
            if free(p):
                for k in (p, *ch):
                    occ[k] -= 1
                changed = True
                continue
            fr = [c for c in ch if free(c)]
            if fr:
                for c in fr:
                    occ[c] -= 1
                ch = [c for c in ch if c not in fr]
                exact = False
                changed = True
            if not ch:
                occ[p] -= 1
                changed = True
                continue
            out.append((p, ch, exact))
        rels = out
    used = {k for p, ch, _ in rels for k in (p, *ch)} | extra_vars | set(keep)
    return Problem({k: v for k, v in problem.bounds.items() if k in used}, [(p, tuple(ch), e) for p, ch, e in rels],
                   problem.sources, list(problem.extra))


def _components(problem: Problem) -> list[tuple[list, list, list]]:
    """Split into connected groups of variables (union-find over relations)."""
    parent: dict = {}

    def find(x):
        while parent.setdefault(x, x) != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    def union(a, b):
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[ra] = rb

    for k in problem.bounds:
        find(k)
    for p, ch, _ in problem.equalities:
        for c in ch:
            union(p, c)
    for coeffs, _, _ in problem.extra:
        ks = list(coeffs)
        for k in ks[1:]:
            union(ks[0], k)
    groups: dict = {}
    for k in problem.bounds:
        groups.setdefault(find(k), []).append(k)
    rel_by: dict = {}
    for r in problem.equalities:
        rel_by.setdefault(find(r[0]), []).append(r)
    ext_by: dict = {}
    for e in problem.extra:
        ext_by.setdefault(find(next(iter(e[0]))), []).append(e)
    return [(g, rel_by.get(root, []), ext_by.get(root, [])) for root, g in groups.items()]


_HIGHS_LOCK = threading.Lock()


def _highs():
    import contextlib
    import io
    import os

    import highspy

    # HiGHS prints a banner to the C-level stdout when created; keep logs clean. One model at a time:
    # two threads swapping file descriptor 1 at once would leave the process's stdout on /dev/null.
    with _HIGHS_LOCK:
        fd = os.dup(1)
        try:
            with open(os.devnull, "w") as null, contextlib.redirect_stdout(io.StringIO()):
                os.dup2(null.fileno(), 1)
                h = highspy.Highs()
        finally:
            os.dup2(fd, 1)
            os.close(fd)
    h.setOptionValue("output_flag", False)
    # Each group's model is solved many times with only the objective changed (hot start from the last
    # basis); presolve would reduce the whole model again on every run. Off: the same optima, and on the
    # shipped release disclosure control took 24 s instead of 30 s (2 runs each, byte-identical packs).
    h.setOptionValue("presolve", "off")
    return h, highspy


CAP = 1e9          # stands in for "no upper bound" inside the LPs (no count comes near it)
CERTIFY_ROUNDS = 8  # random directions tried before solving cell by cell
FOCUS_ROUNDS = 12   # rounds of directions aimed at the cells not yet certified
FOCUS_MIN = 8       # below this many uncertified cells, solve them one by one


LP_THREADS = 2       # copies of a large group's model solved at once (fixed, so a release does the same work everywhere)
PARALLEL_MIN = 500   # groups with fewer variables are solved by one model


def _run_all(fns: list, threads: int | None = None):
    """Call every function, in up to ``threads`` (default: one per function) threads (HiGHS runs without
    the GIL); results in order."""
    if len(fns) == 1 or threads == 1:
        return [f() for f in fns]
    import concurrent.futures as cf

    with cf.ThreadPoolExecutor(max_workers=threads or len(fns)) as ex:
        return list(ex.map(lambda f: f(), fns))


class _GroupModel:
    """One connected group's LP: bounds and relations, re-solved with changed objectives (hot start)."""

    def __init__(self, keys, idx, problem: Problem, rels, extra, want):
        h, highspy = _highs()
        self.h, self.highspy, self.idx = h, highspy, idx
        lo = np.array([problem.bounds[k][0] for k in keys], dtype=float)
        hi = np.array([min(problem.bounds[k][1], CAP) for k in keys], dtype=float)
        inf = highspy.kHighsInf
        h.addVars(len(keys), lo, hi)
        for p, ch, exact in rels:
            acc: dict = {idx[p]: 1.0}
            for c in ch:
                acc[idx[c]] = acc.get(idx[c], 0.0) - 1.0
            h.addRow(0.0, 0.0 if exact else inf, len(acc), np.array(list(acc), dtype=np.int32), np.array(list(acc.values())))
        for coeffs, a, b in extra:
            h.addRow(a if a != -INF else -inf, b if b != INF else inf, len(coeffs),
                     np.array([idx[k] for k in coeffs], dtype=np.int32), np.array(list(coeffs.values()), dtype=float))
        h.run()
        if h.getModelStatus() == highspy.HighsModelStatus.kInfeasible:
            raise AuditError("the published values are mutually inconsistent (the LP is infeasible) in the group of cells "
                             f"containing {C.key_str(want[0])}: a table publishes a count that its relations contradict")
        self.cols = np.array([idx[k] for k in want], dtype=np.int32)

    def push(self, directions) -> tuple[np.ndarray, np.ndarray]:
        """Optimise along each direction over the target cells; the smallest and largest value seen per cell."""
        lo = np.full(len(self.cols), np.inf)
        hi = np.full(len(self.cols), -np.inf)
        for d in directions:
            self.h.changeColsCost(len(self.cols), self.cols, d)
            self.h.run()
            if self.h.getModelStatus() == self.highspy.HighsModelStatus.kOptimal:
                x = np.asarray(self.h.getSolution().col_value)[self.cols]
                lo, hi = np.minimum(lo, x), np.maximum(hi, x)
        return lo, hi

    def exact(self, k, bounds, fix_inf) -> "Interval":
        """The exact [min, max] of one cell."""
        j = self.idx[k]
        res = []
        for sense in (1.0, -1.0):
            self.h.changeColCost(j, sense)
            self.h.run()
            st = self.h.getModelStatus()
            if st != self.highspy.HighsModelStatus.kOptimal:
                raise AuditError(f"LP for {C.key_str(k)} ended with status {self.h.modelStatusToString(st)}")
            res.append(sense * self.h.getInfo().objective_function_value)
        self.h.changeColCost(j, 0.0)
        return Interval(max(res[0], bounds[0]), min(fix_inf(res[1]), bounds[1]))


def _enough(iv: "Interval", need) -> bool:
    n, continuous = need
    return iv.width >= n if continuous else iv.n_integers() >= n


def _solve_group(problem: Problem, keys, rels, extra, want, need, n_models: int, stop_after: int | None) -> tuple[dict, int]:
    """One connected group's intervals (see :func:`intervals`); returns (intervals, cells proven too narrow)."""
    n_short = 0
    got: dict = {}
    idx = {k: i for i, k in enumerate(keys)}
    # n_models copies of the model, each taking a fixed share of the directions and of the cells
    models = _run_all([lambda: _GroupModel(keys, idx, problem, rels, extra, want)] * n_models)
    cols = models[0].cols

    def fix_inf(v):
        return INF if v >= CAP / 10 else v

    todo = list(want)
    n_dirs = 2 + CERTIFY_ROUNDS + (6 if need and any(need.get(k, (0, False))[0] > 2 for k in want) else 0)
    if need and 2 * len(want) > n_dirs:  # else solving each cell exactly (2 LPs a cell) is no more work than the directions
        seen_lo = np.full(len(want), np.inf)
        seen_hi = np.full(len(want), -np.inf)
        rng = np.random.default_rng(len(keys))
        hard = np.array([1.0 if need.get(k, (0, False))[0] > 2 else 0.0 for k in want])  # suppressed cells
        dirs = [np.ones(len(want)), -np.ones(len(want))] + [rng.choice([-1.0, 1.0], len(want)) for _ in range(CERTIFY_ROUNDS)]
        if hard.any():
            dirs += [hard, -hard] + [hard * rng.choice([-1.0, 1.0], len(want)) for _ in range(4)]
        if len(dirs) != n_dirs:  # pragma: no cover - the count above must follow the list
            raise AssertionError(f"{len(dirs)} directions, {n_dirs} counted")

        def push_all(ds):
            nonlocal seen_lo, seen_hi
            for lo_, hi_ in _run_all([(lambda m=m, share=ds[j::n_models]: m.push(share)) for j, m in enumerate(models)]):
                seen_lo, seen_hi = np.minimum(seen_lo, lo_), np.maximum(seen_hi, hi_)

        def short():
            return np.array([not (k in need and np.isfinite(seen_lo[i])
                                  and _enough(Interval(float(seen_lo[i]), fix_inf(float(seen_hi[i]))), need[k]))
                             for i, k in enumerate(want)])

        push_all(dirs)
        # Then push only the cells not yet shown to have enough room, together, in a few directions
        # each time: most of a large group is certified this way with a handful of LPs, not two per cell.
        for _ in range(FOCUS_ROUNDS):
            left = short()
            if left.sum() <= FOCUS_MIN:
                break
            mask = left.astype(float)
            before = int(left.sum())
            push_all([mask, -mask, mask * rng.choice([-1.0, 1.0], len(want)), mask * rng.choice([-1.0, 1.0], len(want))])
            if int(short().sum()) == before:
                break
        for m in models:
            m.h.changeColsCost(len(cols), cols, np.zeros(len(cols)))
        left = short()
        todo = []
        for i, k in enumerate(want):
            if left[i]:
                todo.append(k)
            else:
                got[k] = Interval(float(seen_lo[i]), fix_inf(float(seen_hi[i])))
    if n_models == 1:
        for k in todo:
            got[k] = models[0].exact(k, problem.bounds[k], fix_inf)
            if need and k in need and not _enough(got[k], need[k]):
                n_short += 1
                if stop_after is not None and n_short >= stop_after:
                    return got, n_short
    else:
        for part in _run_all([(lambda m=m, share=todo[j::n_models]: {k: m.exact(k, problem.bounds[k], fix_inf) for k in share})
                              for j, m in enumerate(models)]):
            got.update(part)
    return got, n_short


def intervals(problem: Problem, targets, cache: dict | None = None, need: dict | None = None,
              stop_after: int | None = None) -> dict:
    """Feasible [min, max] of every target variable given all bounds and relations (LP, HiGHS).

    ``need`` (target -> (values, continuous)) says how wide an interval must be to protect the cell:
    feasible points found by a few LPs with random objectives already prove most cells wide enough
    (their returned interval is then an inner bound, "at least this wide"); only the others are
    solved exactly, min and max. A group with so few targets that solving each exactly takes no more
    LPs than the directions would (two per cell) is solved exactly. Without ``need`` every target is
    solved exactly. ``cache`` (a dict kept between calls) reuses the answer for a group of cells that has not changed. ``stop_after``
    (with ``need``): stop once that many cells are proven too narrow; cells not yet decided are then
    left out of the answer."""
    targets = set(targets)
    problem = reduce(problem, targets)
    out: dict = {}
    work = []
    for keys, rels, extra in _components(problem):
        want = [k for k in keys if k in targets]
        if not want:
            continue
        if not rels and not extra:
            for k in want:
                out[k] = Interval(*problem.bounds[k])
            continue
        sig = None
        if cache is not None:
            sig = (tuple(sorted((C.key_str(k), problem.bounds[k]) for k in keys)),
                   tuple(sorted((C.key_str(k), need.get(k) if need else None) for k in want)))
            if sig in cache:
                out.update(cache[sig])
                continue
        work.append((sig, keys, rels, extra, want))
    if stop_after is not None:  # in order, one model at a time, until enough cells are proven too narrow
        n_short = 0
        for sig, keys, rels, extra, want in work:
            got, n = _solve_group(problem, keys, rels, extra, want, need, 1, stop_after - n_short)
            out.update(got)
            n_short += n
            if n_short >= stop_after:
                break  # partial: not cached
            if cache is not None:
                cache[sig] = got
        return out
    # A large group is solved by LP_THREADS copies of its model at once (HiGHS releases the GIL), each
    # taking a fixed share of the directions and of the cells; small groups are solved LP_THREADS at a
    # time. Each group's work depends only on the group, never on timing or on the other groups; and
    # whatever the split, each cell gets the same verdict (a direction only ever proves a cell wide
    # enough, and the cells it does not prove are solved exactly).
    large = [w for w in work if len(w[1]) >= PARALLEL_MIN and LP_THREADS > 1]
    small = [w for w in work if not (len(w[1]) >= PARALLEL_MIN and LP_THREADS > 1)]
    results = [(w[0], _solve_group(problem, *w[1:], need, LP_THREADS, None)[0]) for w in large]
    if small:
        results += list(zip([w[0] for w in small], _run_all(
            [lambda w=w: _solve_group(problem, *w[1:], need, 1, None)[0] for w in small], threads=LP_THREADS)))
    for sig, got in results:
        out.update(got)
        if cache is not None:
            cache[sig] = got
    return out


class AuditError(RuntimeError):
    pass


# ------------------------------------------------------------------------- exposure of a release

@dataclass
class Exposure:
    key: tuple
    kind: str            # "suppressed" | "rounded"
    interval: Interval
    published: str       # what is shown ("[c]" or the rounded value)
    where: list          # "area/table" where the cell is published

    def describe(self, min_values: int) -> str:
        iv = self.interval
        rng = f"{iv.lo:g} to {iv.hi:g}" if iv.hi != INF else f"{iv.lo:g} or more"
        if self.kind == "suppressed":
            why = f"a suppressed cell narrowed to {rng} ({iv.n_integers():g} possible values; at least {min_values} required)"
        else:
            why = f"a rounded count ({self.published}) recovered exactly: {rng}"
        return f"{C.key_str(self.key)}: {why}; published in {', '.join(sorted(self.where)[:6])}"


def exposures(problem: Problem, suppressed: set, rounded: dict, min_values: int, continuous: set = frozenset(),
              cache: dict | None = None, only: set | None = None, stop_after: int | None = None) -> list[Exposure]:
    """Cells whose protection fails: suppressed cells with fewer than ``min_values`` possible values,
    rounded counts with a single possible value. ``rounded``: key -> published value."""
    related = set()
    for p, ch, _ in problem.equalities:
        related.add(p)
        related.update(ch)
    for coeffs, _, _ in problem.extra:
        related.update(coeffs)
    targets = (set(suppressed) | set(rounded)) & related
    if only is not None:
        targets &= only
    need = {}
    for k in targets:
        cont = k in continuous
        if k in suppressed:
            need[k] = (min_values, cont)
        else:
            lo, hi = problem.bounds[k]
            need[k] = (1 if cont else 2, cont) if hi - lo >= 1 else (0, cont)
    iv = intervals(problem, targets, cache, need, stop_after)
    out = []
    for k in sorted(targets, key=C.key_str):
        i = iv.get(k)
        if i is None:
            continue  # undecided: the search stopped early (stop_after)
        where = sorted(problem.sources.get(k, ()))
        if k in suppressed:
            small = (i.width < min_values) if k in continuous else (i.n_integers() < min_values)
            if small:
                out.append(Exposure(k, "suppressed", i, "[c]", where))
        else:
            lo, hi = problem.bounds[k]
            if hi - lo < 1:
                continue  # published without rounding (or an exact zero): there is nothing to undo
            pinned = (i.width < 1) if k in continuous else (i.n_integers() <= 1)
            if pinned and rounded[k] != 0:
                out.append(Exposure(k, "rounded", i, f"{rounded[k]:g}", where))
    return out


# ------------------------------------------------------------------------ audit of published packs

AUDIT_FILE = "disclosure.json"


def audit(out_dir: Path | str, areas: list[str] | None = None, first: int | None = None) -> "AuditReport":
    """Audit every pack in ``out_dir`` (or the named areas) as one release, from the published files
    only: each pack's ``disclosure.json`` (what each published count cell is, no values) and its
    tables. Returns an :class:`AuditReport`; ``report.ok`` is False when any cell is exposed."""
    from spstudy.publish import disclosure as D

    out_dir = Path(out_dir)
    packs = sorted(p.parent for p in out_dir.glob(f"*/{AUDIT_FILE}") if not p.parent.name.startswith("."))
    if areas:
        packs = [p for p in packs if p.name in areas]
    if not packs:
        raise AuditError(f"{out_dir}: no packs with {AUDIT_FILE} found")
    metas = [json.loads((p / AUDIT_FILE).read_text()) for p in packs]
    rules = {(m["rules"]["threshold"], m["rules"]["rounding_base"]) for m in metas}
    if len(rules) > 1:
        raise AuditError(f"packs in {out_dir} were built with different disclosure rules {sorted(rules)}: they are not one release")
    threshold, base = rules.pop()
    R = D.Rules(threshold, base)
    problem = Problem()
    suppressed, rounded, continuous = set(), {}, set()
    leaks = []
    for pack, meta in zip(packs, metas):
        for t in meta["tables"]:
            csv = pack / t["file"]
            rows = D.read_published_csv(csv)
            keyof = {}
            for cell in t["cells"]:
                key = C.parse_key(cell["key"])
                keyof[(cell["row"], cell["column"])] = key
                v = rows[cell["row"]][cell["column"]]
                problem.sources.setdefault(key, set()).add(f"{pack.name}/{t['name']}")
                cont = cell.get("continuous", False)
                if cont:
                    continuous.add(key)
                if v == D.SUPPRESSED:
                    # the pack says how many of a table's [c] are small counts: all of them, or none, tells the reader a bound
                    kind = True if t.get("secondary") == 0 else False if t.get("primary") == 0 else None
                    problem.variable(key, *R.suppressed_bounds(kind, cont))
                    suppressed.add(key)
                else:
                    x = float(v)
                    lo, hi = R.published_bounds(x, cont)
                    problem.variable(key, lo, hi)
                    rounded[key] = x
            for d in t.get("derived", []):
                leaks += D.leaky_derived(rows, d, R, f"{pack.name}/{t['name']}", keyof)
    # a cell both suppressed somewhere and shown elsewhere is the worst leak of all
    shown_and_hidden = suppressed & set(rounded)
    for k in list(shown_and_hidden):
        suppressed.discard(k)
    for p, ch, exact in C.relations(list(problem.bounds)):
        for k in (p, *ch):
            problem.variable(k)
        problem.equalities.append((p, ch, exact))
    for coeffs, lo, hi, why in leaks:
        for k in coeffs:
            problem.variable(k)
        problem.extra.append((coeffs, lo, hi))
    ex = exposures(problem, suppressed, rounded, R.protection_values, continuous, stop_after=first)
    return AuditReport([p.name for p in packs], threshold, base, len(suppressed), len(rounded), ex,
                       sorted(C.key_str(k) for k in shown_and_hidden), [w for *_, w in leaks],
                       stopped_early=first is not None and len(ex) >= first)


@dataclass
class AuditReport:
    packs: list[str]
    threshold: int
    rounding_base: int
    n_suppressed: int
    n_rounded: int
    exposed: list[Exposure]
    inconsistent: list[str]
    leaky: list[str]
    stopped_early: bool = False  # `first` exposures found and the search stopped: there may be more

    @property
    def ok(self) -> bool:
        return not self.exposed and not self.inconsistent

    @property
    def min_values(self) -> int:
        from spstudy.publish.disclosure import Rules
        return Rules(self.threshold, self.rounding_base).protection_values

    def text(self) -> str:
        lines = [f"Disclosure audit of {len(self.packs)} pack(s) as one release ({', '.join(self.packs)}): "
                 f"{self.n_suppressed} suppressed cells and {self.n_rounded} rounded counts checked against every "
                 f"published table and the relations between them (threshold {self.threshold}, rounding to {self.rounding_base})."]
        if self.ok:
            lines.append(f"PASS: no suppressed cell can be narrowed to fewer than {self.min_values} possible values and no rounded count "
                         "can be recovered exactly.")
        else:
            more = " (the search stopped at the first ones found: there may be more)" if self.stopped_early else ""
            lines.append(f"FAIL: {len(self.exposed) + len(self.inconsistent)} cell(s) exposed{more}.")
            for k in self.inconsistent:
                lines.append(f"  {k}: suppressed in one table but shown in another")
            for e in self.exposed[:200]:
                lines.append("  " + e.describe(self.min_values))
        if self.leaky:
            lines.append(f"{len(self.leaky)} published rate(s) or percentage(s) were not computed from the published counts; "
                         "the counts they imply were used in the attack:")
            lines += ["  " + w for w in self.leaky[:50]]
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {"packs": self.packs, "threshold": self.threshold, "rounding_base": self.rounding_base,
                "protection_values": self.min_values, "ok": self.ok, "stopped_early": self.stopped_early,
                "n_suppressed": self.n_suppressed, "n_rounded": self.n_rounded,
                "exposed": [{"cell": C.key_str(e.key), "kind": e.kind, "lo": e.interval.lo,
                             "hi": None if e.interval.hi == INF else e.interval.hi, "tables": e.where} for e in self.exposed],
                "inconsistent": self.inconsistent, "leaky_derived": self.leaky}


def main(argv=None) -> int:
    import argparse

    ap = argparse.ArgumentParser(prog="spstudy audit", description="Audit every pack in a folder as one release: can any "
                                 "suppressed cell or rounded count be recovered from the published tables?")
    ap.add_argument("out", nargs="?", default="outputs", help="folder holding the packs (default outputs/)")
    ap.add_argument("--json", action="store_true", help="print the report as JSON")
    ap.add_argument("--first", type=int, metavar="N", help="stop after N exposed cells (a quick verdict on a release that fails)")
    a = ap.parse_args(argv)
    if a.first is not None and a.first < 1:
        ap.error("--first must be at least 1")
    try:
        rep = audit(a.out, first=a.first)
    except AuditError as e:
        print(f"error: {e}")
        return 2
    print(json.dumps(rep.to_dict(), indent=2) if a.json else rep.text())
    return 0 if rep.ok else 1
