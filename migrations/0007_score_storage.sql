-- Storage that fits the big models (issue 10, "Scale").
--
-- Until 0006 every score was one row of score_values (about 35 bytes: rowid, REAL, rank), so
-- the ~650 M weights of esm2_t33_650M would take ~23 GB per method, and a shard's partial sums
-- were one BLOB (at most SQLite's 1 GB value limit). Now:
--   * score_rows holds every score of a set as float32, one row per output unit of each block
--     (a weight matrix's row in PyTorch (out, in) order: n_cols values; a neuron block's unit:
--     one value): 4 bytes a score. Random baseline sets have none (their scores are a seeded
--     uniform draw that kneuron regenerates).
--   * score_values keeps rows (score, rank) only for a set's best ranks: ranks 1 ..= 1,000,000,
--     i.e. every rank of a set of that size or fewer.
--   * the view all_scores decodes any single score from score_rows in plain SQL (no
--     extension), with its rank when that rank has a row.
--   * shard partial sums are chunked (shard_sums, at most 64 MB a value) and folded in shard
--     order into a running total (shard_index -1; shard_totals) as shards are committed, so only
--     the running total and the shards finished ahead of it are stored.
-- The existing sets' scores are packed into score_rows by kneuron right after this file runs
-- (SQL cannot write float32), in the same transaction.

-- Scores ---------------------------------------------------------------------------------

CREATE TABLE score_rows (
    set_id      INTEGER NOT NULL REFERENCES score_sets (set_id),
    block_index INTEGER NOT NULL,
    row         INTEGER NOT NULL,
    scores      BLOB NOT NULL,      -- the row's n_cols scores, little-endian IEEE-754 float32
    UNIQUE (set_id, block_index, row)
);

-- 0 .. (largest n_cols stored) - 1: the columns all_scores enumerates (kneuron extends it).
CREATE TABLE score_columns (col INTEGER PRIMARY KEY);

-- 2^(max(e, 1) - 150) for every float32 biased exponent e: a float32 with bits (sign, e, m)
-- is (-1)^sign * (m + (e > 0) * 2^23) * scale(e) (IEEE 754-2008, binary32; e = 255, Inf/NaN,
-- has no row). Every scale is an exact double, so the decoded value is exactly the float32.
CREATE TABLE float32_scales (exponent INTEGER PRIMARY KEY, scale REAL NOT NULL);
WITH RECURSIVE p(e, s) AS (SELECT 254, 20282409603651670423947251286016.0   -- 2^104
                           UNION ALL SELECT e - 1, CASE WHEN e > 1 THEN s / 2 ELSE s END FROM p WHERE e > 0)
INSERT INTO float32_scales SELECT e, s FROM p;

-- Every score of every set that has score_rows, decoded from its float32 bits: filter on
-- (method, granularity, target_class, layer, module, row, col) to read one score through the
-- indexes. `rank` is the set's rank of the element when it has a row in score_values (the
-- best 1,000,000), else NULL. A BLOB of the wrong length (a damaged database) gives NULL scores.
CREATE VIEW all_scores AS
SELECT method, granularity, target_class, seed, layer, module, row, col,
       CASE WHEN bits >> 31 THEN -1.0 ELSE 1.0 END
         * ((bits & 8388607) + CASE WHEN (bits >> 23) & 255 > 0 THEN 8388608 ELSE 0 END)
         * (SELECT f.scale FROM float32_scales f WHERE f.exponent = (bits >> 23) & 255) AS score,
       (SELECT v.rank FROM score_values v WHERE v.id = score_id) AS rank
FROM (
  SELECT method, granularity, target_class, seed, layer, module, row, col, score_id,
         (instr('0123456789ABCDEF', substr(h, 1, 1)) - 1) * 16 + instr('0123456789ABCDEF', substr(h, 2, 1)) - 1
       + (((instr('0123456789ABCDEF', substr(h, 3, 1)) - 1) * 16 + instr('0123456789ABCDEF', substr(h, 4, 1)) - 1) << 8)
       + (((instr('0123456789ABCDEF', substr(h, 5, 1)) - 1) * 16 + instr('0123456789ABCDEF', substr(h, 6, 1)) - 1) << 16)
       + (((instr('0123456789ABCDEF', substr(h, 7, 1)) - 1) * 16 + instr('0123456789ABCDEF', substr(h, 8, 1)) - 1) << 24) AS bits
  FROM (
    SELECT s.method, s.granularity, s.target_class, s.seed, b.layer, b.module, r.row, c.col,
           s.set_id * 4294967296 + b.offset + r.row * b.n_cols + c.col AS score_id,
           CASE WHEN length(r.scores) = 4 * b.n_cols THEN hex(substr(r.scores, 4 * c.col + 1, 4)) END AS h
    FROM score_sets s
    CROSS JOIN score_blocks b ON b.set_id = s.set_id
    CROSS JOIN score_rows r ON r.set_id = b.set_id AND r.block_index = b.block_index
    CROSS JOIN score_columns c ON c.col < b.n_cols));

-- Shard sums -----------------------------------------------------------------------------

-- Partial sums in chunks (float64, little-endian; a shard's values are its chunks in
-- chunk_index order). shard_index -1 is the running total of shard_totals.n_folded shards.
CREATE TABLE shard_sums (
    method      TEXT NOT NULL,
    granularity TEXT NOT NULL,
    shard_index INTEGER NOT NULL,
    chunk_index INTEGER NOT NULL,
    sums        BLOB NOT NULL,
    UNIQUE (method, granularity, shard_index, chunk_index)
);
-- Carried over only while the attribute stage has not written its scores (afterwards the sums
-- are spent: kneuron now deletes them when it writes the scores).
INSERT INTO shard_sums (method, granularity, shard_index, chunk_index, sums)
SELECT method, granularity, shard_index, 0, sums FROM shards
WHERE NOT EXISTS (SELECT 1 FROM stages WHERE stage = 'attribute');

-- The running total of shards 0 ..< n_folded (added in shard order, starting from zeros);
-- class_counts: little-endian int64 sequences per group (one group, or one per class), the
-- total holding the groups with sequences, as a shard does.
CREATE TABLE shard_totals (
    method       TEXT NOT NULL,
    granularity  TEXT NOT NULL,
    content_key  TEXT NOT NULL,
    n_folded     INTEGER NOT NULL,
    class_counts BLOB NOT NULL,
    PRIMARY KEY (method, granularity)
);

CREATE TABLE shards_0007 (
    method        TEXT NOT NULL,
    granularity   TEXT NOT NULL,
    shard_index   INTEGER NOT NULL,
    content_key   TEXT NOT NULL,
    n_sequences   INTEGER NOT NULL,
    class_counts  BLOB,
    seconds       REAL NOT NULL,
    finished_at   TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    PRIMARY KEY (method, granularity, shard_index)
);
INSERT INTO shards_0007 (method, granularity, shard_index, content_key, n_sequences, class_counts, seconds, finished_at)
SELECT method, granularity, shard_index, content_key, n_sequences, class_counts, seconds, finished_at FROM shards;
DROP TABLE shards;
ALTER TABLE shards_0007 RENAME TO shards;

-- One element's scores across methods and targets now reads all_scores, so it answers for
-- every weight or neuron (rank NULL beyond a set's ranked rows); random_rank_mean only when every
-- random seed of the granularity has a ranked row for the element (else NULL: a mean of the
-- ranked rows alone would be biased towards the top ranks); otherwise as in 0006.
DROP VIEW neuron_across_methods;
CREATE VIEW neuron_across_methods AS
SELECT n.granularity, n.layer, n.module, n.row, n.col, n.method, n.target_class, c.ec_label, n.score, n.rank,
       (SELECT s.n_scores FROM score_sets s WHERE s.method = n.method AND s.granularity = n.granularity
          AND s.target_class = n.target_class AND s.seed = n.seed) AS n_scores,
       (SELECT CASE WHEN COUNT(*) = (SELECT COUNT(*) FROM score_sets q WHERE q.method = 'random' AND q.granularity = n.granularity)
                    THEN AVG(r.rank) END
          FROM neuron_scores r
         WHERE r.method = 'random' AND r.granularity = n.granularity AND r.layer = n.layer
           AND r.module = n.module AND r.row = n.row AND r.col = n.col) AS random_rank_mean
FROM all_scores n LEFT JOIN classes c ON c.class_index = n.target_class
WHERE n.method != 'random';
