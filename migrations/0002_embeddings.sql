-- Per-sequence embeddings written by `kneuron embed` (independent of the pipeline stages).
-- vector: little-endian float32, `dim` values. layer: 0 = embeddings after token dropout,
-- i = output of block i (1-based), num_hidden_layers = HF last_hidden_state (after the final
-- LayerNorm). pooling: 'mean' over residues (not <cls>/<eos>) or 'cls' (position 0).
CREATE TABLE embeddings (
    model_sha256 TEXT NOT NULL,            -- SHA-256 of the checkpoint's model.safetensors
    sequence_id  TEXT NOT NULL,
    layer        INTEGER NOT NULL,
    pooling      TEXT NOT NULL CHECK (pooling IN ('mean', 'cls')),
    dim          INTEGER NOT NULL,
    vector       BLOB NOT NULL,
    n_residues   INTEGER NOT NULL,         -- residues embedded (after cropping)
    cropped      INTEGER NOT NULL,         -- 1 when the sequence was cropped
    PRIMARY KEY (model_sha256, sequence_id, layer, pooling)
) WITHOUT ROWID;
