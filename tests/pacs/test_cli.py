"""`vnhis pacs remote add|list|remove`, `vnhis pacs export` and the settings the node refuses."""

from __future__ import annotations

import io

import pydicom
from pydicom.fileset import FileSet

from core.audit import Actor
from pacs import store
from tests.browser import server_env, vnhis
from tests.pacs.conftest import sample_file


def _env(db_url, tmp_path, **extra):
    return server_env(tmp_path, VNHIS_ENV="development", VNHIS_DATABASE_URL=db_url,
                      VNHIS_STORAGE_DIR=str(tmp_path / "storage"), VNHIS_MODULES="his,pacs", **extra)


def test_remote_nodes_on_the_command_line(committed_db_url, tmp_path):
    env = _env(committed_db_url, tmp_path)
    added = vnhis(env, "pacs", "remote", "add", "WS1", "10.0.0.7", "11112", "--description", "Trạm đọc 1")
    assert (added.returncode, added.stdout.strip()) == (0, "added WS1 at 10.0.0.7:11112")
    bad = vnhis(env, "pacs", "remote", "add", "WS2", "10.0.0.8", "70000")
    assert bad.returncode == 1 and "port must be a number from 1 to 65535" in bad.stderr
    listed = vnhis(env, "pacs", "remote", "list")
    assert listed.stdout.splitlines() == ["WS1              10.0.0.7:11112  Trạm đọc 1"]


def test_bad_node_settings_are_one_line(committed_db_url, tmp_path):
    env = _env(committed_db_url, tmp_path, VNHIS_PACS_PORT="http")
    result = vnhis(env, "pacs")
    assert (result.returncode, result.stderr.strip()) == (2, "vnhis: VNHIS_PACS_PORT must be a whole number, got "
                                                             "'http'")
    stations = vnhis(_env(committed_db_url, tmp_path, VNHIS_PACS_STATION_AES="CT:CT01"), "pacs")
    assert stations.returncode == 2 and "VNHIS_PACS_STATION_AES must be MODALITY=AE pairs" in stations.stderr


def test_export_on_the_command_line(committed_db_url, pacs_sessions, tmp_path):
    with pacs_sessions() as session:
        raw = io.BytesIO()
        pydicom.dcmread(sample_file("CT_small.dcm")).save_as(raw, enforce_file_format=True)
        study_uid = store.store_instance(session, Actor.system("test"), tmp_path / "storage" / "dicom",
                                         raw.getvalue()).instance.series.study.study_uid
        session.commit()
    env = _env(committed_db_url, tmp_path)
    done = vnhis(env, "pacs", "export", study_uid, str(tmp_path / "cd"))
    assert done.returncode == 0, done.stderr
    assert len(FileSet(tmp_path / "cd" / "DICOMDIR")) == 1
