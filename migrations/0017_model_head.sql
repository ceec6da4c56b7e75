-- How the train stage obtained the classifier head of the run's initial model (one row),
-- so that a checkpoint's labels are never silently replaced: 'preset' (a seeded preset),
-- 'initialised' (the checkpoint has no classifier, e.g. EsmForMaskedLM), 'reinitialised'
-- (model.head: reinit), 'kept' (the stored head, its id2label in the data's class order) or
-- 'reordered' (the stored head, its outputs permuted to the data's class order by EC label).
-- `detail` is the sentence the stage printed; `ignored` the stored tensors not loaded.
CREATE TABLE model_head (
    id       INTEGER PRIMARY KEY CHECK (id = 1),
    source   TEXT NOT NULL,
    decision TEXT NOT NULL CHECK (decision IN ('preset', 'initialised', 'reinitialised', 'kept', 'reordered')),
    detail   TEXT NOT NULL,
    ignored  TEXT NOT NULL DEFAULT ''
);

-- For a kept or reordered head: which stored output (and its id2label text) became each of the
-- run's classes. No rows for a head that was initialised.
CREATE TABLE model_head_classes (
    class_index      INTEGER PRIMARY KEY,
    checkpoint_index INTEGER NOT NULL,
    checkpoint_label TEXT NOT NULL
);
