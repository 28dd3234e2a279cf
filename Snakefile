# pgrpo: Personalized GRPO, from raw data to the paper's tables and figures.
# Run `snakemake --cores 2` for the laptop-scale default (config.yaml), or
# `snakemake --cores 2 --configfile .test/config.yaml` for the tiny CI scale.


configfile: "config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/targets.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/model.smk"
include: "workflow/rules/embed.smk"
include: "workflow/rules/cluster.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/report.smk"
include: "workflow/rules/judge.smk"
include: "workflow/rules/general.smk"
include: "workflow/rules/simulate.smk"


# Rules that a cluster executor runs on the submitting node instead of submitting: cheap
# ones here, and the raw data rules that need the internet (workflow/rules/data.smk).
localrules:
    all,
    table,
    figure,
    reward_curves,
    manifest,
    compare_reference,


report: "workflow/report/workflow.rst"


onstart:
    from pgrpo.io import write_text
    from pgrpo.manifest import write_start_stamp

    write_text(CONFIG, CONFIG_TEXT)  # the config every job reads (common.smk)
    write_start_stamp(RUN_STARTED)


onsuccess:
    from pgrpo.manifest import write_end_stamp

    write_end_stamp(RUN_STARTED, "success")


onerror:
    from pgrpo.manifest import write_end_stamp

    write_end_stamp(RUN_STARTED, "error")


rule all:
    default_target: True
    input:
        final_targets(),
