"""Install the site profile template as a Snakemake profile named ``slurm``.

Snakemake looks for a profile given by name (``snakemake --profile slurm``) in the working
directory, the user's configuration directory (``$XDG_CONFIG_HOME/snakemake``, by default
``~/.config/snakemake``) and the site's (``/etc/xdg/snakemake``). This module writes the
template ``profiles/slurm/config.yaml`` of the workflow into the user's directory with the
partition and account filled in, so that after this one step ``snakemake --profile slurm``
works as typed::

    .venv/bin/python -m mia_audit.pipeline.site_profile --partition gpu --account mylab

Without ``--partition`` / ``--account`` the key is left out and SLURM uses the user's default
partition and account. ``cores`` (the most CPUs one job asks for) is the template's, or the
CPUs of the partition's largest node where ``sinfo`` shows fewer: a job asking for more CPUs
than any node has would wait in the queue for ever. An existing profile is kept unless
``--force`` is given.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from mia_audit.errors import DataError
from mia_audit.pipeline import slurm
from mia_audit.provenance import source_root

PLACEHOLDERS = {"slurm_partition": "<partition>", "slurm_account": "<account>"}
_NAME = re.compile(r"^[A-Za-z0-9_.:+-]+$")


def profile_home() -> Path:
    """The user's Snakemake configuration directory, where a profile name is looked up
    (Snakemake's own ``get_appdirs().user_config_dir``: ``$XDG_CONFIG_HOME/snakemake``)."""
    from snakemake.common import get_appdirs

    return Path(get_appdirs().user_config_dir)


def template_path() -> Path:
    """``profiles/slurm/config.yaml`` of the workflow checkout, else the package's copy of it
    (a library installed from the workflow's source, not editable)."""
    checkout = source_root() / "profiles" / "slurm" / "config.yaml"
    return checkout if checkout.is_file() else Path(__file__).parent / "slurm_profile.yaml"


def template_cores(template: str) -> int | None:
    """The template's ``cores:`` value."""
    m = re.search(r"^cores:\s*(\d+)", template, re.M)
    return int(m.group(1)) if m else None


def render(template: str, partition: str | None = None, account: str | None = None, cores: int | None = None) -> str:
    """The template with each placeholder line (``slurm_partition: "<partition>"``,
    ``slurm_account: "<account>"``) given its value, or removed when the value is None, and
    ``cores:`` set to ``cores`` when given."""
    values = {"slurm_partition": partition, "slurm_account": account}
    out = []
    for line in template.splitlines(keepends=True):
        key = next((k for k, ph in PLACEHOLDERS.items() if re.match(rf"\s*{k}:\s*[\"']?{re.escape(ph)}", line)), None)
        if key is None:
            out.append(line)
            continue
        value = values[key]
        if value is None:
            continue
        if not _NAME.match(value):
            raise DataError(f"--{key.removeprefix('slurm_')} {value!r}: expected a SLURM name (letters, digits, _.:+-)")
        indent = line[: len(line) - len(line.lstrip())]
        out.append(f'{indent}{key}: "{value}"\n')
    text = "".join(out)
    if cores is not None:
        text = re.sub(r"^cores:\s*\d+", f"cores: {int(cores)}", text, count=1, flags=re.M)
    for key, ph in PLACEHOLDERS.items():
        if values[key] is not None and ph in text:
            raise DataError(f"template line of {key} not recognised; the installed profile would keep {ph}")
    return text


def install(
    partition: str | None = None,
    account: str | None = None,
    name: str = "slurm",
    dest: Path | None = None,
    template: Path | None = None,
    force: bool = False,
    cluster=None,
) -> Path:
    """Write ``<dest>/<name>/config.yaml`` (dest: :func:`profile_home`) from the template; returns it.
    ``cluster``: the partitions as :func:`mia_audit.pipeline.slurm.partitions` reads them from
    sinfo (read here when None); ``cores`` is lowered to the partition's largest node."""
    template = Path(template) if template is not None else template_path()
    if not template.is_file():
        raise DataError(f"profile template {template} does not exist (pass --template PATH)")
    target = (Path(dest) if dest is not None else profile_home()) / name / "config.yaml"
    if target.exists() and not force:
        raise DataError(f"profile {target} exists; pass --force to replace it (or edit it)")
    raw = template.read_text()
    cores = template_cores(raw)
    cluster = cluster if cluster is not None else slurm.partitions()
    if cluster is not None and cores is not None:
        parts, default = cluster
        if partition is not None and partition not in parts:
            raise DataError(f"--partition {partition!r}: sinfo lists no such partition (partitions: {sorted(parts)})")
        cores = slurm.fitting_cores(cluster, partition, cores)
    text = render(raw, partition, account, cores)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text)
    return target


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m mia_audit.pipeline.site_profile",
        description="Install the SLURM site profile template where `snakemake --profile slurm` finds it.",
    )
    ap.add_argument("--partition", help="SLURM partition of the jobs (default: your default partition)")
    ap.add_argument("--account", help="SLURM account to charge (default: your default account)")
    ap.add_argument("--name", default="slurm", help="profile name (default: slurm)")
    ap.add_argument("--dest", type=Path, help="profile directory (default: Snakemake's user configuration directory)")
    ap.add_argument("--template", type=Path, help="template file (default: profiles/slurm/config.yaml)")
    ap.add_argument("--force", action="store_true", help="replace an existing profile of that name")
    args = ap.parse_args(argv)
    try:
        path = install(args.partition, args.account, args.name, args.dest, args.template, args.force)
    except DataError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    cores = template_cores(path.read_text())
    print(f"installed {path} (cores: {cores}, the most CPUs one job asks for)\nrun: snakemake --profile {args.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
