-- The hazard risk database. Each build writes a new version; `current_version` switches atomically.
CREATE SCHEMA IF NOT EXISTS risk;

CREATE TABLE risk.version (
    id          bigserial PRIMARY KEY,
    region      text NOT NULL,                -- region key, e.g. 'wuhai'
    region_code text NOT NULL,                -- 6-digit admin code of the whole region
    region_name text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    grid        jsonb NOT NULL,               -- RegularGrid.to_dict()
    config      jsonb NOT NULL,               -- the region configuration the build used
    provenance  jsonb NOT NULL                -- inputs, sources, datum conversion, method
);

CREATE TABLE risk.current_version (
    region      text PRIMARY KEY,
    version_id  bigint NOT NULL REFERENCES risk.version (id),
    switched_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE risk.unit (
    version_id  bigint NOT NULL REFERENCES risk.version (id) ON DELETE CASCADE,
    code        char(12) NOT NULL,            -- 12-digit geocode
    idx         int NOT NULL,                 -- position within its level, as used by the cover arrays
    name        text NOT NULL,
    name_en     text NOT NULL,
    level       text NOT NULL CHECK (level IN ('city', 'district', 'town')),
    parent      char(12),
    population  bigint NOT NULL CHECK (population >= 0),
    area_km2    double precision NOT NULL CHECK (area_km2 > 0),
    boundary    text NOT NULL CHECK (boundary IN ('official', 'approximate')),
    code_status text NOT NULL CHECK (code_status IN ('official', 'provisional')),
    geometry    jsonb NOT NULL,               -- GeoJSON geometry, WGS84
    PRIMARY KEY (version_id, code),
    UNIQUE (version_id, level, idx)
);

-- Gridded arrays (layers, risk indices, grades, cell covers) as raw little-endian bytes: one row per array,
-- so loading a region is one query and np.frombuffer per row.
CREATE TABLE risk.layer (
    version_id  bigint NOT NULL REFERENCES risk.version (id) ON DELETE CASCADE,
    name        text NOT NULL,
    kind        text NOT NULL CHECK (kind IN ('population', 'exposure', 'vulnerability', 'sensitivity',
                                              'hazard', 'risk', 'grade', 'cover')),
    hazard      text CHECK (hazard IN ('heat', 'rainstorm', 'frost', 'sandstorm')),
    dtype       text NOT NULL,
    shape       int[] NOT NULL,
    units       text NOT NULL,
    provenance  jsonb NOT NULL,
    data        bytea NOT NULL,
    PRIMARY KEY (version_id, name)
);
-- Float arrays barely compress; skipping TOAST compression keeps loads at memory speed.
ALTER TABLE risk.layer ALTER COLUMN data SET STORAGE EXTERNAL;

CREATE TABLE risk.assessment (
    version_id  bigint NOT NULL REFERENCES risk.version (id) ON DELETE CASCADE,
    hazard      text NOT NULL CHECK (hazard IN ('heat', 'rainstorm', 'frost', 'sandstorm')),
    method      jsonb NOT NULL,               -- normalisation, weighting, combination, grading
    weights     jsonb NOT NULL,               -- indicator and component weights actually used
    breaks      double precision[] NOT NULL,  -- four thresholds between the five grades
    PRIMARY KEY (version_id, hazard)
);

CREATE TABLE risk.unit_risk (
    version_id  bigint NOT NULL,
    unit_code   char(12) NOT NULL,
    hazard      text NOT NULL CHECK (hazard IN ('heat', 'rainstorm', 'frost', 'sandstorm')),
    risk_index  double precision NOT NULL,
    grade       smallint NOT NULL CHECK (grade BETWEEN 1 AND 5),
    population_by_grade bigint[] NOT NULL,    -- residents living in cells of grade 1..5
    PRIMARY KEY (version_id, hazard, unit_code),
    FOREIGN KEY (version_id, unit_code) REFERENCES risk.unit (version_id, code) ON DELETE CASCADE
);
