-- The planted-knowledge benchmark's ground truth (issue 12): every motif `kneuron plant` wrote
-- into a sequence, read by ingest from `inputs.planted_motifs` (checked against the sequence).
-- Positions are 1-based and inclusive, on the sequence as ingested (before any crop).
CREATE TABLE planted_motifs (
    sequence_id TEXT NOT NULL REFERENCES sequences(id),
    start       INTEGER NOT NULL CHECK (start >= 1),
    "end"       INTEGER NOT NULL CHECK ("end" >= start),
    residues    TEXT NOT NULL,      -- the residues at start ... end
    pattern     TEXT NOT NULL,      -- PROSITE syntax, e.g. W-C-x-H-M-W
    ec_label    TEXT,               -- the class the motif defines (classes.ec_label); NULL for a decoy
    decoy       INTEGER NOT NULL CHECK (decoy IN (0, 1)),
    PRIMARY KEY (sequence_id, start)
) WITHOUT ROWID;

-- input_files also records the enzyme.dat and planted-motif files ingest reads (role).
CREATE TABLE input_files_0011 (
    path       TEXT PRIMARY KEY,
    role       TEXT NOT NULL CHECK (role IN ('fasta', 'labels', 'enzyme_dat', 'planted_motifs')),
    size_bytes INTEGER NOT NULL,
    sha256     TEXT NOT NULL
);
INSERT INTO input_files_0011 SELECT path, role, size_bytes, sha256 FROM input_files;
DROP TABLE input_files;
ALTER TABLE input_files_0011 RENAME TO input_files;
