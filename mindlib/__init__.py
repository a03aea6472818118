"""mindlib — AFIRE tokens, SADGate routing and the MIND decoder for multimodal fMRI encoding.

One module per concept; ``docs/method.md`` describes the method they implement::

    Data and time
      layout       the Algonauts 2025 file layout, run, movie and stimulus names
      align        2 Hz feature frames to TRs by exact overlap, the haemodynamic lag, FIR delays
      data         the fMRI reader with its checks, the feature store, splits, training windows
      synthetic    the embedded synthetic study in the release's layout, with its ground truth
      features     subpackage: stimuli on the 2 Hz grid, extractors, the store writer, adapters, transcripts
      precomputed  importer for public precomputed features (one HDF5 per stimulus, once per TR)
      cache        aligned features kept on disk and read back by memory map
    Model
      afire        AFIRE: per-modality projectors, fusion, temporal module -> TR tokens
      sadgate      SADGate: token router x subject prior, Top-K, the balance loss
      experts      the E expert heads, their gate-weighted sum (Eq. 4) and its sparse dispatch
      mind         MIND: AFIRE tokens -> SADGate -> experts, with the auxiliary loss
      decoder      what every decoder shares: its output, subject checks, nn.Linear init, size
      baselines    the baseline, MLP, MMoE and FIR ridge decoders of Table 1
      reduce       the ridge's design at real size: PCA per modality, FIR lags by shifting
      models       decoder registry: build any decoder from its name
    Fitting and scoring
      train        the objective, the schedule, checkpoints and resume, whole-run predictions
      distributed  one training run over several torchrun processes (data parallel)
      metrics      Pearson, Spearman, R2, the official Algonauts metric, noise ceilings
      stats        paired differences between decoders with confidence intervals
      isg          inter-subject generalisation: leave-one-subject-out, few-shot calibration
      experiment   one decoder on one backbone: grid search on validation, scored once on test
      submission   predict held-out stimuli, write and check the official submission, score it
    Reading the results
      analysis     gates over whole runs, effective subject priors, expert usage by content
      plotting     brain maps on fsaverage5, gates, priors, tables, training curves
    Tooling
      progress     progress bars for long loops: an ETA, bounded redraws, one output per bar
      params       notebook parameters checked against the parameters cell
      files        write beside then rename; JSON with NaN as null
      project      where studies, results and figures live; results files
      story        the notebook story: names, what each teaches, parameters per size
      notebooks    the papermill runner of the notebook story (make demo, make reproduce)
      grid         grids of independent runs through submitit (local processes or Slurm)
      report       the reproduction report and the README tables, from results files
"""

__version__ = "0.1.0"
