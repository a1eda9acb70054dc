#!/usr/bin/env Rscript
# R MatchIt competitor for benchmarks/run.py (run only when MatchIt >= 4.5.4 is installed).
#
# Usage: Rscript matchit_bench.R <input.csv> <pairs_out.csv> <score|ps> <exact,cols> <covariate,cols>
#
#   score: matchit(treat ~ ps, distance = qlogis(ps)) - greedy 1:1 nearest neighbour on the logit
#          of the given score, caliper 0.2 SD (std.caliper = TRUE), largest first, no replacement;
#   ps:    matchit(treat ~ <covariates>, distance = "glm", link = "linear.logit") - the same
#          matching on the logit of a logistic-regression propensity score (the fit is timed).
#   exact: comma-separated exact-matching columns (may be empty).
#
# Prints one JSON line {"seconds": <matchit() elapsed>, "version": "<MatchIt version>"} and writes
# the matched pairs (treated id, control id; row names = the input's id column) to pairs_out.csv.
suppressPackageStartupMessages(library(MatchIt))
args <- commandArgs(trailingOnly = TRUE)
d <- read.csv(args[1], stringsAsFactors = FALSE)
rownames(d) <- as.character(d$id)
mode <- args[3]
exact_cols <- if (length(args) >= 4 && nzchar(args[4])) strsplit(args[4], ",")[[1]] else character(0)
covs <- if (length(args) >= 5 && nzchar(args[5])) strsplit(args[5], ",")[[1]] else character(0)
for (v in c(exact_cols, covs)) if (is.character(d[[v]])) d[[v]] <- factor(d[[v]])
exact <- if (length(exact_cols)) as.formula(paste("~", paste(exact_cols, collapse = " + "))) else NULL
t0 <- proc.time()[["elapsed"]]
if (mode == "score") {
  m <- matchit(treat ~ ps, data = d, method = "nearest", distance = qlogis(d$ps), caliper = 0.2,
               std.caliper = TRUE, exact = exact, m.order = "largest", ratio = 1, replace = FALSE)
} else {
  f <- as.formula(paste("treat ~", paste(covs, collapse = " + ")))
  m <- matchit(f, data = d, method = "nearest", distance = "glm", link = "linear.logit", caliper = 0.2,
               std.caliper = TRUE, exact = exact, m.order = "largest", ratio = 1, replace = FALSE)
}
secs <- proc.time()[["elapsed"]] - t0
mm <- m$match.matrix
pairs <- data.frame(treated = rownames(mm), control = as.character(mm[, 1]), stringsAsFactors = FALSE)
pairs <- pairs[!is.na(pairs$control), ]
write.csv(pairs, args[2], row.names = FALSE)
cat(sprintf('{"seconds": %.6f, "version": "%s"}\n', secs, as.character(packageVersion("MatchIt"))))
