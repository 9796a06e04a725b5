-- 004_images.sql — the images an attack with "save" keeps per row
-- (docs/spec.md, docs/report.md §Images): what is "x_adv", "purified_clean"
-- (P(x)) or "purified_adv" (P(x_adv)), data c·h·w little-endian float32 in
-- [0,1], C×H×W.  Written in the transaction that inserts the row, with INSERT
-- OR IGNORE on the key, so a resent or duplicated result adds nothing.
CREATE TABLE images (
    sweep    INTEGER NOT NULL,
    purifier TEXT NOT NULL,
    attack   TEXT NOT NULL,
    seed     INTEGER NOT NULL,
    image    INTEGER NOT NULL,
    what     TEXT NOT NULL,
    c        INTEGER NOT NULL,
    h        INTEGER NOT NULL,
    w        INTEGER NOT NULL,
    data     BLOB NOT NULL,
    PRIMARY KEY (sweep, purifier, attack, seed, image, what)
) WITHOUT ROWID;
