"""The benchmark against scikit-learn and neural weak-supervision baselines: settings, baselines, runner, results store, report, demo."""
