-- Sequences excluded from training stay in `sequences` (issue 5): a protein whose EC numbers
-- span several classes at the run's label level keeps its row here (its ECs in `labels`) with
-- `ec_label` NULL and `excluded_reason` saying why; tokenize and split use only the rows with
-- `excluded_reason IS NULL`. The same protein is also in `rejected_records` with the same reason.
--
-- SQLite cannot drop the NOT NULL of `ec_label` in place, so the table is rebuilt as
-- https://www.sqlite.org/lang_altertable.html#otheralter describes (GRDB runs migrations with
-- foreign keys off and checks them before committing). Existing rows are all training rows.
CREATE TABLE sequences_0004 (
    id              TEXT PRIMARY KEY,      -- accession, e.g. 'P12345'
    sequence        TEXT NOT NULL,
    length          INTEGER NOT NULL CHECK (length > 0),
    ec_label        TEXT REFERENCES classes(ec_label),   -- NULL only for an excluded sequence
    source_file     TEXT NOT NULL,
    source_line     INTEGER NOT NULL,
    notes           TEXT NOT NULL DEFAULT '',
    excluded_reason TEXT CHECK (excluded_reason IS NULL OR excluded_reason <> ''),  -- NULL = used for training
    CHECK (ec_label IS NOT NULL OR excluded_reason IS NOT NULL)
);
INSERT INTO sequences_0004 (id, sequence, length, ec_label, source_file, source_line, notes)
    SELECT id, sequence, length, ec_label, source_file, source_line, notes FROM sequences;
DROP TABLE sequences;
ALTER TABLE sequences_0004 RENAME TO sequences;
