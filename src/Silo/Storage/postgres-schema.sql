-- Weft's schema for Orleans' ADO.NET clustering and grain persistence on PostgreSQL (12 or later).
-- The providers issue only the statements stored in OrleansQuery, by key, with named parameters, and read the result
-- columns by name; the tables behind them are ours. Every statement here is idempotent: each silo runs the whole
-- script at start-up, under an advisory lock, so a fresh database needs no manual setup step.

CREATE TABLE IF NOT EXISTS OrleansQuery
(
    QueryKey varchar(64) PRIMARY KEY,
    QueryText text NOT NULL
);

CREATE TABLE IF NOT EXISTS weft_membership_version
(
    deployment_id varchar(150) PRIMARY KEY,
    stamp timestamptz NOT NULL DEFAULT now(),
    version integer NOT NULL DEFAULT 0
);

CREATE TABLE IF NOT EXISTS weft_membership
(
    deployment_id varchar(150) NOT NULL REFERENCES weft_membership_version (deployment_id),
    address varchar(45) NOT NULL,
    port integer NOT NULL,
    generation integer NOT NULL,
    silo_name varchar(150) NOT NULL,
    host_name varchar(150) NOT NULL,
    status integer NOT NULL,
    proxy_port integer,
    suspect_times text,
    start_time timestamptz NOT NULL,
    i_am_alive_time timestamptz NOT NULL,
    PRIMARY KEY (deployment_id, address, port, generation)
);

-- Writes to the membership table are conditional on the table version the silo read; a silo whose write loses the race
-- gets 0 and rereads. The version row is updated first so that its row lock serializes concurrent writers, and a
-- failed member write raises inside the block so that the version bump is rolled back with it.
CREATE OR REPLACE FUNCTION weft_insert_member(p_deployment varchar, p_address varchar, p_port integer,
    p_generation integer, p_silo_name varchar, p_host_name varchar, p_status integer, p_proxy_port integer,
    p_suspect_times text, p_start_time timestamptz, p_i_am_alive_time timestamptz, p_version integer)
RETURNS integer LANGUAGE plpgsql AS $body$
BEGIN
    UPDATE weft_membership_version SET version = version + 1, stamp = now()
    WHERE deployment_id = p_deployment AND version = p_version;
    IF NOT FOUND THEN RETURN 0; END IF;
    INSERT INTO weft_membership (deployment_id, address, port, generation, silo_name, host_name, status, proxy_port,
        suspect_times, start_time, i_am_alive_time)
    VALUES (p_deployment, p_address, p_port, p_generation, p_silo_name, p_host_name, p_status, p_proxy_port,
        p_suspect_times, p_start_time, p_i_am_alive_time);
    RETURN 1;
EXCEPTION WHEN unique_violation THEN
    RETURN 0;
END
$body$;

CREATE OR REPLACE FUNCTION weft_update_member(p_deployment varchar, p_address varchar, p_port integer,
    p_generation integer, p_status integer, p_suspect_times text, p_i_am_alive_time timestamptz, p_version integer)
RETURNS integer LANGUAGE plpgsql AS $body$
BEGIN
    UPDATE weft_membership_version SET version = version + 1, stamp = now()
    WHERE deployment_id = p_deployment AND version = p_version;
    IF NOT FOUND THEN RETURN 0; END IF;
    UPDATE weft_membership SET status = p_status, suspect_times = p_suspect_times, i_am_alive_time = p_i_am_alive_time
    WHERE deployment_id = p_deployment AND address = p_address AND port = p_port AND generation = p_generation;
    IF NOT FOUND THEN RAISE EXCEPTION USING ERRCODE = 'no_data_found'; END IF;
    RETURN 1;
EXCEPTION WHEN no_data_found THEN
    RETURN 0;
END
$body$;

CREATE TABLE IF NOT EXISTS weft_grain_state
(
    service_id varchar(150) NOT NULL,
    grain_type varchar(512) NOT NULL,
    grain_type_hash integer NOT NULL,
    grain_id_hash integer NOT NULL,
    grain_id_n0 bigint NOT NULL,
    grain_id_n1 bigint NOT NULL,
    grain_id_extension varchar(512),
    payload bytea,
    modified_on timestamptz NOT NULL DEFAULT now(),
    version integer NOT NULL
);

CREATE UNIQUE INDEX IF NOT EXISTS weft_grain_state_key ON weft_grain_state
    (grain_id_hash, grain_type_hash, service_id, grain_type, grain_id_n0, grain_id_n1,
     COALESCE(grain_id_extension, ''));

-- A write carries the version the grain read (null: it read nothing). It updates only that version, or inserts only
-- when no row exists; otherwise it returns the version it was given, which the provider turns into an
-- InconsistentStateException (another activation wrote in between).
CREATE OR REPLACE FUNCTION weft_write_grain_state(p_id_hash integer, p_n0 bigint, p_n1 bigint, p_type_hash integer,
    p_type varchar, p_extension varchar, p_service varchar, p_version integer, p_payload bytea)
RETURNS integer LANGUAGE plpgsql AS $body$
DECLARE
    written integer;
BEGIN
    IF p_version IS NULL THEN
        INSERT INTO weft_grain_state (service_id, grain_type, grain_type_hash, grain_id_hash, grain_id_n0, grain_id_n1,
            grain_id_extension, payload, version)
        VALUES (p_service, p_type, p_type_hash, p_id_hash, p_n0, p_n1, p_extension, p_payload, 1)
        ON CONFLICT DO NOTHING
        RETURNING version INTO written;
    ELSE
        UPDATE weft_grain_state SET payload = p_payload, modified_on = now(), version = version + 1
        WHERE grain_id_hash = p_id_hash AND grain_type_hash = p_type_hash AND service_id = p_service
            AND grain_type = p_type AND grain_id_n0 = p_n0 AND grain_id_n1 = p_n1
            AND COALESCE(grain_id_extension, '') = COALESCE(p_extension, '') AND version = p_version
        RETURNING version INTO written;
    END IF;
    RETURN COALESCE(written, p_version);
END
$body$;

INSERT INTO OrleansQuery (QueryKey, QueryText) VALUES
('UpdateIAmAlivetimeKey', '
    UPDATE weft_membership SET i_am_alive_time = @IAmAliveTime
    WHERE deployment_id = @DeploymentId AND address = @Address AND port = @Port AND generation = @Generation'),
('InsertMembershipVersionKey', '
    WITH inserted AS (
        INSERT INTO weft_membership_version (deployment_id) VALUES (@DeploymentId)
        ON CONFLICT DO NOTHING RETURNING 1)
    SELECT count(*)::integer FROM inserted'),
('InsertMembershipKey', '
    SELECT weft_insert_member(@DeploymentId, @Address, @Port, @Generation, @SiloName, @HostName, @Status,
        @ProxyPort, NULL, @StartTime, @IAmAliveTime, @Version)'),
('UpdateMembershipKey', '
    SELECT weft_update_member(@DeploymentId, @Address, @Port, @Generation, @Status, @SuspectTimes, @IAmAliveTime,
        @Version)'),
('MembershipReadRowKey', '
    SELECT v.deployment_id AS DeploymentId, m.address AS Address, m.port AS Port, m.generation AS Generation,
        m.silo_name AS SiloName, m.host_name AS HostName, m.status AS Status, m.proxy_port AS ProxyPort,
        m.suspect_times AS SuspectTimes, m.start_time AS StartTime, m.i_am_alive_time AS IAmAliveTime,
        v.version AS Version
    FROM weft_membership_version v
    LEFT JOIN weft_membership m ON m.deployment_id = v.deployment_id
        AND m.address = @Address AND m.port = @Port AND m.generation = @Generation
    WHERE v.deployment_id = @DeploymentId'),
('MembershipReadAllKey', '
    SELECT v.deployment_id AS DeploymentId, m.address AS Address, m.port AS Port, m.generation AS Generation,
        m.silo_name AS SiloName, m.host_name AS HostName, m.status AS Status, m.proxy_port AS ProxyPort,
        m.suspect_times AS SuspectTimes, m.start_time AS StartTime, m.i_am_alive_time AS IAmAliveTime,
        v.version AS Version
    FROM weft_membership_version v
    LEFT JOIN weft_membership m ON m.deployment_id = v.deployment_id
    WHERE v.deployment_id = @DeploymentId'),
('DeleteMembershipTableEntriesKey', '
    DELETE FROM weft_membership WHERE deployment_id = @DeploymentId;
    DELETE FROM weft_membership_version WHERE deployment_id = @DeploymentId'),
('GatewaysQueryKey', '
    SELECT address AS Address, proxy_port AS ProxyPort, generation AS Generation
    FROM weft_membership
    WHERE deployment_id = @DeploymentId AND status = @Status AND proxy_port > 0'),
-- 6 is SiloStatus.Dead
('CleanupDefunctSiloEntriesKey', '
    DELETE FROM weft_membership
    WHERE deployment_id = @DeploymentId AND i_am_alive_time < @IAmAliveTime AND status = 6'),
('CleanupDefunctSiloEntryKey', '
    DELETE FROM weft_membership
    WHERE deployment_id = @DeploymentId AND status = 6 AND address = @Address AND port = @Port
        AND generation = @Generation AND i_am_alive_time = @IAmAliveTime AND start_time = @StartTime
        AND suspect_times IS NOT DISTINCT FROM @SuspectTimes'),
('WriteToStorageKey', '
    SELECT weft_write_grain_state(@GrainIdHash, @GrainIdN0, @GrainIdN1, @GrainTypeHash, @GrainTypeString,
        @GrainIdExtensionString, @ServiceId, @GrainStateVersion, @PayloadBinary) AS NewGrainStateVersion'),
('ReadFromStorageKey', '
    SELECT payload AS PayloadBinary, version AS Version
    FROM weft_grain_state
    WHERE grain_id_hash = @GrainIdHash AND grain_type_hash = @GrainTypeHash AND service_id = @ServiceId
        AND grain_type = @GrainTypeString AND grain_id_n0 = @GrainIdN0 AND grain_id_n1 = @GrainIdN1
        AND COALESCE(grain_id_extension, '''') = COALESCE(@GrainIdExtensionString, '''')'),
-- a cleared state keeps its row (and version) so that a stale activation cannot write over the reset
('ClearStorageKey', '
    UPDATE weft_grain_state SET payload = NULL, modified_on = now(), version = version + 1
    WHERE grain_id_hash = @GrainIdHash AND grain_type_hash = @GrainTypeHash AND service_id = @ServiceId
        AND grain_type = @GrainTypeString AND grain_id_n0 = @GrainIdN0 AND grain_id_n1 = @GrainIdN1
        AND COALESCE(grain_id_extension, '''') = COALESCE(@GrainIdExtensionString, '''')
        AND version = @GrainStateVersion
    RETURNING version AS NewGrainStateVersion')
ON CONFLICT (QueryKey) DO UPDATE SET QueryText = EXCLUDED.QueryText;
