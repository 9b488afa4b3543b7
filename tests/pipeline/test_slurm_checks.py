"""What a SLURM run checks before submitting (mia_audit.pipeline.slurm, checks.check_cluster_requests),
the site-profile command's cores, and the table of requested against used, without a cluster:
sinfo and sacct answers are given as text."""

from __future__ import annotations

import math
import re
import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest
from workflow_config import deep_update, small_config, validated

from mia_audit.errors import ConfigError
from mia_audit.pipeline import checks, site_profile, slurm

REPO = Path(__file__).resolve().parents[2]

#: sinfo -h -o '%P|%c|%m|%G|%l' of a cluster with a CPU partition (default) and a GPU partition
SINFO = """cpu*|2|19284|(null)|infinite
gpu|32|512000|gpu:a100:4(S:0-1)|2-00:00:00
gpu|64|1024000|gpu:h100:8,gpu:1|1-00:00:00
short|8|16000|(null)|30:00
"""


def cluster():
    return slurm.parse_sinfo(SINFO)


def test_sinfo_fields_are_parsed() -> None:
    parts, default = cluster()
    assert default == "cpu" and sorted(parts) == ["cpu", "gpu", "short"]
    assert parts["cpu"][0] == slurm.Nodes("cpu", 2, 19284, {}, math.inf)
    assert parts["gpu"][0].gpus == {"a100": 4} and parts["gpu"][0].time_limit_min == 2 * 1440
    assert parts["gpu"][1].gpus == {"h100": 8, "": 1} and parts["gpu"][1].gpu_count("h100") == 8
    assert parts["gpu"][1].gpu_count() == 9 and parts["short"][0].time_limit_min == 30
    assert slurm.parse_time_limit("1:30:00") == 90 and slurm.parse_time_limit("45") == 45
    assert slurm.parse_gres("gpu:2,tmpdisk:100") == {"": 2}


def test_sinfo_that_fails_or_is_missing_means_no_check() -> None:
    def failing(*args, **kwargs):
        return subprocess.CompletedProcess(args, 1, "", "slurm_load_partitions: Unable to contact slurm controller")

    assert slurm.partitions(run=failing) is None
    assert slurm.partitions(run=lambda *a, **k: subprocess.CompletedProcess(a, 0, SINFO, "")) == cluster()


def config(**cluster_keys):
    return validated(deep_update(small_config(n_models=8, per_job=2), {"cluster": cluster_keys}))


def test_requests_that_fit_pass_and_name_their_keys() -> None:
    cfg = config()
    reqs = checks.cluster_requests(cfg, cores=4, group_components={"shards": 4})
    shard = next(r for r in reqs if r.rule == "train_models")
    assert shard.cpus == 1 and shard.cpus_key == "config key cluster.table_cpus_per_job"  # an MLP on a table
    assert shard.gpus == 0 and shard.mem_mb < 2000 and shard.runtime_min < 30
    assert checks.check_cluster_requests(cfg, 4, {"slurm_partition": "cpu"}, cluster=cluster())


@pytest.mark.parametrize(
    ("cluster_keys", "cores", "resources", "message"),
    [
        # a GPU request where the partition has none: the key to change is cluster.gpu
        ({"gpu": True}, 2, {"slurm_partition": "cpu"}, r"config key cluster\.gpu asks for 1 GPU\(s\).*'cpu'.*none"),
        ({"gpu": True, "gpu_model": "v100"}, 2, {"slurm_partition": "gpu"}, r"of type v100.*cluster\.gpu_model"),
        ({"cpus_per_job": 8, "table_cpus_per_job": 4}, 8, {"slurm_partition": "cpu"}, r"table_cpus_per_job = 4 CPUs"),
        ({"table_cpus_per_job": 4}, 8, None, r"at most 2 \(sinfo\).*cores"),  # the default partition
        ({"mem_mb_per_model": {"mlp": 10000}}, 2, {"slurm_partition": "cpu"}, r"models_per_job = 2 .*21\d\d\d MB"),
        ({"light_mem_mb": 30000}, 2, {"slurm_partition": "cpu"}, r"size of data set pbc .*light_mem_mb.* 3\d\d\d\d MB"),
        ({"startup_seconds": 3600}, 2, {"slurm_partition": "short"}, r"minutes, beyond the time limit of .*'short'"),
    ],
)
def test_a_request_no_node_can_meet_stops_naming_the_key(cluster_keys, cores, resources, message) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        checks.check_cluster_requests(config(**cluster_keys), cores, resources, cluster=cluster())
    assert "\n" not in str(info.value)


def test_profile_cores_cap_the_cpus_and_set_resources_pick_the_partition() -> None:
    cfg = config(table_cpus_per_job=4, gpu=True)
    # 4 threads capped by the profile's cores = 2 fit the 2-CPU nodes; the GPU jobs go to the GPU partition
    overwrite = {"train_models": {"slurm_partition": "gpu"}, "prepare_dataset": {"slurm_partition": "gpu"}}
    assert checks.check_cluster_requests(cfg, 2, {"slurm_partition": "cpu"}, overwrite, cluster=cluster())
    with pytest.raises(ConfigError, match=r"'nowhere', which sinfo does not list"):
        checks.check_cluster_requests(cfg, 2, {"slurm_partition": "nowhere"}, cluster=cluster())


def test_site_profile_cores_fit_the_partition(tmp_path: Path) -> None:
    path = site_profile.install("cpu", "mia", dest=tmp_path, cluster=cluster())
    text = path.read_text()
    assert re.search(r"^cores: 2$", text, re.M), text  # the template's 4, lowered to the 2-CPU nodes
    assert "group_slot=1" in text and "group_slot=local" in text
    path = site_profile.install("gpu", None, dest=tmp_path, force=True, cluster=cluster())
    assert re.search(r"^cores: 4$", path.read_text(), re.M)  # 32-CPU nodes: the template's value
    path = site_profile.install(None, None, dest=tmp_path, force=True, cluster=None)  # no sinfo: unchanged
    with pytest.raises(Exception, match="sinfo lists no such partition"):
        site_profile.install("gpux", None, dest=tmp_path, force=True, cluster=cluster())


SACCT = """20|20|COMPLETED|130|9|1815M|1|billing=1,cpu=1,mem=1815M,node=1||00:42.468
20.batch|20.batch|COMPLETED|130|||1||182344K|00:02.702
20.0|20.0|COMPLETED|9|||1||331880K|00:03.873
20.1|20.1|COMPLETED|68|||1||997164K|00:13.095
21|21|FAILED|30|60|8000M|2|billing=2,cpu=2,mem=8000M,node=1,gres/gpu=1||00:05.000
21.0|21.0|FAILED|28|||2||400M|00:05.000
"""


def test_sacct_usage_and_the_twice_use_rule() -> None:
    def run(cmd, **kwargs):
        assert cmd[:2] == ["sacct", "-n"] and "20,21" in cmd
        return subprocess.CompletedProcess(cmd, 0, SACCT, "")

    setup, shards = slurm.sacct_usage({"20": "group_setup", "21": "group_shards"}, run=run)
    assert (setup.steps, setup.req_cpus, setup.req_mem_mb, setup.req_minutes) == (2, 1, 1815, 9)
    assert setup.max_rss_mb == pytest.approx(997164 / 1024) and setup.elapsed_s == 130
    assert setup.within() == []  # 1815 ≤ 2 × 974 + 500; 9 ≤ 2 × 2.2 + 5 + 2
    assert shards.req_gpus == 1 and shards.state == "FAILED"
    problems = shards.within()
    assert len(problems) == 2 and problems[0].startswith("memory 8000 MB") and problems[1].startswith("time 60 min")
    table = slurm.usage_table([setup, shards])
    assert "group_setup" in table and "4.2×" in table
    assert slurm.parse_duration_s("1-02:03:04") == 93784 and slurm.parse_size_mb("1.5G") == 1536


def test_logs_of_a_run_name_its_jobs(tmp_path: Path) -> None:
    for rel in ("group_setup_a_b/1234.log", "group_audit_c/pbc/99.log", "rule_x/notes.txt"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("")
    assert slurm.logged_jobs(tmp_path) == {"99": "group_audit_c", "1234": "group_setup_a_b"}


def test_default_logdir_only_when_none_was_given() -> None:
    settings = SimpleNamespace(logdir=None)
    assert slurm.default_logdir(settings, "res/logs/slurm") and str(settings.logdir) == "res/logs/slurm"
    assert not slurm.default_logdir(settings, "other")  # set now: kept
    assert not slurm.default_logdir(None, "x") and not slurm.default_logdir(SimpleNamespace(), "x")


def test_rejected_submission_is_reported_once_with_sbatch_error() -> None:
    """The workaround for rejected submissions (slurm.reported_once, slurm.with_message) on
    stand-ins of a group job: sbatch's message reaches the log, and the job is not restarted;
    a job that ran and failed keeps its retries."""
    reported, logged = [], []
    report = slurm.reported_once(lambda self, info, msg=None, **kw: reported.append((info.job.attempt, msg)))
    job = SimpleNamespace(restart_times=2, attempt=1, groupid="setup")
    msg = "SLURM sbatch failed. The error message was 'sbatch: error: Invalid qos specification'."
    report(None, SimpleNamespace(job=job), msg=msg)
    assert reported[0][0] == 3 and reported[0][1].startswith(msg) and "not retried" in reported[0][1]
    reported.clear()
    job.attempt = 1
    report(None, SimpleNamespace(job=job), msg="SLURM-job '12' failed, SLURM status is: 'FAILED'")
    assert reported == [(1, "SLURM-job '12' failed, SLURM status is: 'FAILED'")]

    log_error = slurm.with_message(
        lambda self, msg=None, aux_logs=None: logged.append("group report"),
        SimpleNamespace(error=logged.append),
    )
    log_error(job, msg=msg)
    assert logged == [f"Error in group setup: {msg}", "group report"]


def test_workaround_applies_to_the_installed_snakemake() -> None:
    pytest.importorskip("snakemake_executor_plugin_slurm")
    import inspect

    from snakemake.jobs import GroupJob
    from snakemake_executor_plugin_slurm import Executor

    # the plugin still reports a rejected submission with this prefix through report_job_error ...
    source = inspect.getsource(Executor.run_job)
    assert f'"{slurm.SBATCH_FAILED}. "' in source and "_report_job_error_threadsafe" in source
    # ... and Snakemake's group report still drops the message (remove the workaround when it shows it)
    assert "msg" not in inspect.getsource(GroupJob.log_error).split("extra=dict(")[1].split(")")[0]
    assert slurm.show_sbatch_errors() and slurm.show_sbatch_errors()  # idempotent
    assert GroupJob.log_error.__name__ == "log_error_with_message"
