#!/usr/bin/env bash
# A one-node Slurm cluster on this machine, for tests/test_grid.py::test_slurm_engine_runs_real_jobs.
# Needs root and Debian's packages:  apt-get install -y slurm-wlm munge  (Slurm 22.05 on Debian 12).
# Idempotent: does nothing when `sinfo` already answers. Stop the daemons it started with
#   kill "$(cat /run/slurmd.pid)" "$(cat /run/slurmctld.pid)"
set -euo pipefail
if sinfo -h >/dev/null 2>&1; then echo "slurm already answers:"; sinfo; exit 0; fi
node=$(hostname -s)
cpus=$(nproc)
mkdir -p /etc/slurm /var/spool/slurmctld /var/spool/slurmd /var/log/slurm /run/munge
chown slurm:slurm /var/spool/slurmctld /var/log/slurm
chown munge:munge /run/munge
cat > /etc/slurm/slurm.conf <<CONF
ClusterName=mind
SlurmctldHost=${node}
SlurmUser=slurm
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
ReturnToService=2
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmdSpoolDir=/var/spool/slurmd
StateSaveLocation=/var/spool/slurmctld
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
JobAcctGatherType=jobacct_gather/none
MpiDefault=none
NodeName=${node} CPUs=${cpus} RealMemory=4000 State=UNKNOWN
PartitionName=debug Nodes=${node} Default=YES MaxTime=60 State=UP
CONF
test -s /etc/munge/munge.key || /usr/sbin/mungekey --create
pgrep -x munged >/dev/null || runuser -u munge -- /usr/sbin/munged
pgrep -x slurmctld >/dev/null || slurmctld
pgrep -x slurmd >/dev/null || slurmd
for _ in $(seq 20); do sinfo -h -o %T 2>/dev/null | grep -q idle && break; sleep 0.5; done
sinfo
