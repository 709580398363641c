from tortoise import BaseDBAsyncClient

RUN_IN_TRANSACTION = True


async def upgrade(db: BaseDBAsyncClient) -> str:
    return """
        CREATE TABLE IF NOT EXISTS "users" (
    "id" SERIAL NOT NULL PRIMARY KEY,
    "username" VARCHAR(64) NOT NULL,
    "username_key" VARCHAR(64) NOT NULL UNIQUE,
    "password_hash" VARCHAR(255) NOT NULL,
    "role" VARCHAR(16) NOT NULL,
    "created_at" TIMESTAMPTZ NOT NULL
);
COMMENT ON TABLE "users" IS 'logins';
CREATE TABLE IF NOT EXISTS "accounts" (
    "available" BIGINT NOT NULL,
    "frozen" BIGINT NOT NULL,
    "user_id" INT NOT NULL PRIMARY KEY REFERENCES "users" ("id") ON DELETE CASCADE
);
COMMENT ON TABLE "accounts" IS 'points per user: available and frozen';
CREATE TABLE IF NOT EXISTS "holds" (
    "job_id" VARCHAR(36) NOT NULL PRIMARY KEY,
    "amount" BIGINT NOT NULL,
    "captured" BIGINT,
    "settled" BOOL NOT NULL,
    "created_at" TIMESTAMPTZ NOT NULL,
    "settled_at" TIMESTAMPTZ,
    "user_id" INT NOT NULL REFERENCES "users" ("id") ON DELETE CASCADE
);
COMMENT ON TABLE "holds" IS 'the one hold of each job and its single settlement';
CREATE TABLE IF NOT EXISTS "jobs" (
    "id" VARCHAR(36) NOT NULL PRIMARY KEY,
    "status" VARCHAR(16) NOT NULL,
    "workflow" VARCHAR(64) NOT NULL,
    "prompt" TEXT NOT NULL,
    "negative_prompt" TEXT NOT NULL,
    "translated_prompt" TEXT,
    "translation" VARCHAR(16) NOT NULL,
    "positive_prompt" TEXT NOT NULL,
    "effective_negative_prompt" TEXT NOT NULL,
    "count" INT NOT NULL,
    "width" INT NOT NULL,
    "height" INT NOT NULL,
    "steps" INT NOT NULL,
    "cfg" DOUBLE PRECISION NOT NULL,
    "sampler" VARCHAR(64) NOT NULL,
    "scheduler" VARCHAR(64) NOT NULL,
    "model" VARCHAR(255) NOT NULL,
    "seed" BIGINT NOT NULL,
    "priority" INT NOT NULL,
    "front" BOOL NOT NULL,
    "cost" BIGINT NOT NULL,
    "charged" BIGINT,
    "graph" JSONB NOT NULL,
    "idempotency_key" VARCHAR(128),
    "backend" VARCHAR(255),
    "attempts" INT NOT NULL,
    "progress_step" INT,
    "progress_max" INT,
    "error_code" VARCHAR(64),
    "error_message" TEXT,
    "created_at" TIMESTAMPTZ NOT NULL,
    "dispatched_at" TIMESTAMPTZ,
    "started_at" TIMESTAMPTZ,
    "finished_at" TIMESTAMPTZ,
    "user_id" INT NOT NULL REFERENCES "users" ("id") ON DELETE CASCADE,
    CONSTRAINT "uid_jobs_user_id_2d13d0" UNIQUE ("user_id", "idempotency_key")
);
CREATE INDEX IF NOT EXISTS "idx_jobs_status_f35b2b" ON "jobs" ("status");
CREATE INDEX IF NOT EXISTS "idx_jobs_created_7005f4" ON "jobs" ("created_at");
CREATE INDEX IF NOT EXISTS "idx_jobs_user_id_260af5" ON "jobs" ("user_id", "created_at");
COMMENT ON TABLE "jobs" IS 'image generation jobs';
CREATE TABLE IF NOT EXISTS "images" (
    "id" VARCHAR(36) NOT NULL PRIMARY KEY,
    "index" INT NOT NULL,
    "path" VARCHAR(255) NOT NULL,
    "width" INT NOT NULL,
    "height" INT NOT NULL,
    "seed" BIGINT NOT NULL,
    "created_at" TIMESTAMPTZ NOT NULL,
    "job_id" VARCHAR(36) NOT NULL REFERENCES "jobs" ("id") ON DELETE CASCADE,
    "user_id" INT NOT NULL REFERENCES "users" ("id") ON DELETE CASCADE,
    CONSTRAINT "uid_images_job_id_817ad5" UNIQUE ("job_id", "index")
);
CREATE INDEX IF NOT EXISTS "idx_images_created_ab9b5a" ON "images" ("created_at");
CREATE INDEX IF NOT EXISTS "idx_images_user_id_503907" ON "images" ("user_id", "created_at");
COMMENT ON TABLE "images" IS 'generated images';
CREATE TABLE IF NOT EXISTS "ledger_entries" (
    "id" BIGSERIAL NOT NULL PRIMARY KEY,
    "kind" VARCHAR(16) NOT NULL,
    "amount" BIGINT NOT NULL,
    "available_after" BIGINT NOT NULL,
    "frozen_after" BIGINT NOT NULL,
    "job_id" VARCHAR(36),
    "move_key" VARCHAR(100) NOT NULL UNIQUE,
    "reason" VARCHAR(255),
    "created_at" TIMESTAMPTZ NOT NULL,
    "user_id" INT NOT NULL REFERENCES "users" ("id") ON DELETE CASCADE
);
CREATE INDEX IF NOT EXISTS "idx_ledger_entr_job_id_ce41ff" ON "ledger_entries" ("job_id");
CREATE INDEX IF NOT EXISTS "idx_ledger_entr_user_id_bc8069" ON "ledger_entries" ("user_id", "id");
COMMENT ON TABLE "ledger_entries" IS 'append-only moves of points with the balances after each';
CREATE TABLE IF NOT EXISTS "access_tokens" (
    "id" SERIAL NOT NULL PRIMARY KEY,
    "digest" VARCHAR(64) NOT NULL UNIQUE,
    "created_at" TIMESTAMPTZ NOT NULL,
    "expires_at" TIMESTAMPTZ NOT NULL,
    "revoked_at" TIMESTAMPTZ,
    "user_id" INT NOT NULL REFERENCES "users" ("id") ON DELETE CASCADE
);
COMMENT ON TABLE "access_tokens" IS 'access tokens stored as SHA-256 digests';
CREATE TABLE IF NOT EXISTS "aerich" (
    "id" SERIAL NOT NULL PRIMARY KEY,
    "version" VARCHAR(255) NOT NULL,
    "app" VARCHAR(100) NOT NULL,
    "content" JSONB NOT NULL
);"""


async def downgrade(db: BaseDBAsyncClient) -> str:
    return """
        """


MODELS_STATE = (
    "eJztXW1T47YW/iuafCk7w3IhvJbe6Uxgs4WWJR3I9na67BjFVhIXR3IlhZD28t8rye+OHG"
    "yThMTrL+xG0iPLzzl6OUfS8T+NEbGQw3ZapknGmN+QSeMU/NPAcITEfzS526ABXTfKkwkc"
    "9hxVHHrlVCLsMU6hyUV6HzoMiSQLMZPaLrcJlqVdYouywEUUjBmipwA+QtuRdQGILdCn5G"
    "+EZVUWMUVdNh5IVEsV/k7gFPwU3Iewe2BCDHoIMBdhvg3uvSrugc3AEDmiSiIehfs2ttkQ"
    "WeBP0mM78gFjbP81RgYnA8SHiIrHfPkqkm1soSfEgp/ug9G3RTUJhmRjDNuStahMg09dlX"
    "GJ+UdVWr5AzzCJMx7hFMKd8iHBIUS8j0wdIIwo5MiKUYfHjuOzHCR5jRYJnI5R2ForSrBQ"
    "H44dKQCJ9poRpTUM47rTNW7bXcNozAgnQMSY95NMgqVgJfeKiIFswvvm3sHxwcn+0cGJKK"
    "KaGaYcP3uPjujxgIqk627jWeVDDr0Siu6I31C4swyf2YNMkhOwxdAcJEQ8R3odkLq7XJa/"
    "bzb394+bu/tHJ4cHx8eHJ7sh3bNZ83g/u/xJUi8KENFHvc4byCLiPuqB+YmPMDXr+VmXw0"
    "v/IdYBZEIPmg8TSC1jJoc0ibazyKFlVlwdjLpE/FECuxRvCLGp6xf+YP9ZVOKP9Bs1Ej0H"
    "qhikRs+ncBIO3fHxV7y8eGXE1euft27PWx/ajecE90mqZdaoOUqnQAwH6n1ly2Q7fCoviG"
    "NlTKlB1tz5dEjkU3JNpmLeAgQjICGA9AGC5lBOcGoqtcU0ywR3YmZliHMHjZDXGxMzazdV"
    "BZT4H8C9B7HuQd+xXQbQk2iIMxVFTQS2TOjyMVUz9n/E7EoFnZChd6+dVsWTtbPq+RBS/c"
    "ATIVJqLV5w43RZqNST4SA84EPxc/9ozqDyW+vm/KJ1s7V/9C45slz7OU2V9cIsO5LrtoJT"
    "bIhZ3Ui//IXMiqdYv/toNH0e9XFUKfJ9Xf62uffHNQ31hIhRDOu5j6FS1PcEbFmKH6Ysb+"
    "LUEtnpXMmaR4z95XjMpmi9/vzprH2ztacGH1HI5lmaTpHkxICaYeaDyOH2CGVoewKZIt3y"
    "oTvBfzZx6BEvaHWwM/V75hyBdC8/tW+7rU+/JqTyodVty5ymSp2mUrfSM0NYCfjfZfcCyJ"
    "/gj851W9FLGB9Q9cSoXPePhmwTHHNiYDIxoBWbEIPUgDVdHysh9SRyAVJfszFvQ4QccDJX"
    "ymvgBHnrLrwAN8iMEfiSYfeRUGQP8C9ounzTbj16y4KNuxcM68UZgpcjkZ5hCYZ52/NMQV"
    "uWymkLhrIFEUpDscY8+yLNqEYg5sbXlLn2JVTE2Jz8NdOIK2bA1cZbSePNk1X+sTcsX4+8"
    "mnWqC4XYCqhtUH4xivvWZCZUt3l4mEN3RalM5VV5SX4ntqUjOFNbw/K1tmq0dSgWAEPN2j"
    "qTzghQ86n1CRT1xQSIKtG5aifYRrkGVrqUqK5n4O09/G/d15ayTKyN8pUZ5b6p9Eqb/GfS"
    "q7ZJHnVbvUWe1tnaz7G5fg5fmTVejkjNs30c8jxWPg+H8msAX7YiDQTQvG6OQNFsC41cwh"
    "E2p8YDmtYejzWayrI9HqL/8zErQnWEWNba4e343svD914233szS4cJoQ99x+uueRmOYyq4"
    "Pjs6yEHy0UEmyTIr5WiiZORqLJ4uespYn0WIShA8z5hp/95N2DEBkVufWr+/S9gyV53rn4"
    "LiMeLPrzpnKcIxGojJ4hEZxZnXQGsRlBCBeDRmjppHiwtBCy4lhg3aCl6mFGQzC4zwKVgl"
    "OsCyZ1KXMLvkmKOBVoLyVWs76veRqYh8xQQwt5JaLCXEYupPnGafeaziadOF7VvUu2r1rt"
    "r68sk4cjXmevaeWlC+ZlO3XdYfaHykDoFZI6dXPsVlXwI2kM05VH3ofD67aoNfb9rnl7eX"
    "nevknpfKlEnRKeWbdusqrapw5Do6J/Qc31IEqcRKYNmOD2YOkTUuSnIcVNOcg2blYC9CcQ"
    "ioIL1LOcpUHxZprP6wiEttQm0+LbCciEOqxPzCVhR9SrS3/+bdgwox9S2oIregCCt4zTJA"
    "VElxV32+TEx5g8J3LCNQfcWyLPMDCl2NW+Ln2861nvUQkD7LZ5sc/B84NttEtZ/Do6Rivm"
    "8t7UbbTh7FkxWkfWvpUw0FFoEaaBW2WFJ+/uZJHkd/8yTb0y/zkqTLEzQIFzoAEoNUj+Sl"
    "LLkh50I/eRFnUhxSmZg0i7vuQokcSZghfW6F1tQpXIUmycWTKzpGGW59WE3tLLWIUkIFZ5"
    "YmMFj2gJtEVW/MXbwXyWNsJLQRDjRUz9kxTQOrwPbKN0nrmzHf3s0Yy2Yu5NLfXULuM+A6"
    "csY6R85gHNJyHTyJrKW8zlIOIs6WEHMKWst5neVcX7mr4+CspLcs835YzI0YRo9Juc193M"
    "dfblDmeWBNdJuKcP28zBt0V8gaINrGnE4zbtKlSmzPu1HnqLIGEoXtvNGDRG0IW++JWFuD"
    "EXlETMaC9WO1T2w+BDLUbA86sosxAPscURVttpEitdGKVUSRSaiKKisjzMpqo1q3NdVSeZ"
    "7Or9zmO3f4Dt9LlPRJ34MRfBBlVIhbVVXotOan4E5FzT3975+k9+OdaNNdEC0znuSHqQ2T"
    "7jChqgEmdBwVXV48R4WLh2BAIeY549nGLxYWvCY4by8q7wThjwTz+tQ6BItfySZU9u3BB7"
    "uYlz4oX8FjMYu/8FBHEn6jrdbwiweGGjULSmAWXIuitCi8byCUkUMaWQuhtBBWHl/mZbt6"
    "86/kxxej3mKsCMFxTOWiHuzt7uaZS3d3sydTmZdkmYpVarFLmhGiCvstKzhRsFlbLKtlv7"
    "p7LLWnrvbULZffDY/k1CUPCGd4oMK87Rc+BijPsHBZOK/rSUGABwGMC22xAGTg9qL1vnl4"
    "BCx7gBifCfTUaGEQh27HoPLTR0n4D8rRI2TgFZYfB2RDMsHqg0av/W5RoSGlYm6dpX0D0J"
    "NbkVVQhKjcOnPxR3zqFdC3uAJCT64taish9SSyglLfECnn2pKm6FHMcmU6dxJZHzxYZynX"
    "5kxtzqykt2yqORMQr7FmYjLJNmbka+U0YhwysLHGRgEqYwfcy7pkG7y97C1pjcifwMaiyA"
    "RRYMovqIIHhFymchjwtEBlvBeVC+tIhQZzpneYYIAeEZ0CsUC0sWjPZCi0SqR4+9mqw8t/"
    "vIMatX2zhvZNoBBFLJw4poIb04u3cuK9rgzRld24WEJkW8jYhIghewhZwW8ppYAV1OylbG"
    "JQ4hQaPYLyq+M3XEFt4qGW2kOSTX21PCQzJkCec7LywOErj8leiCqqZRgkAxLUJ4lf5Cj4"
    "hEV5hir3KZkEP95Z5tcxNHt2uopMRVtu5ZmK7/FVhaNCDobYyUozI1ZxwGcHoy4Rf15mte"
    "VVlY/X9fSX6mkt4IppIWqbw4bGE+PnbM/dVY7KvOSJyX6z2gGyXg6QR0RZwY8RxCC1kZgz"
    "do6rCfCSzbBfvILsLuWopniivIA0y3B2sLMYpA53VjDcWQFDbfH7Cs//Ap7ynxU="
)
