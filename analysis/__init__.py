"""Analysis of a vidbench results tree: summary.csv (aggregate), paper tables (tables), Pareto plots (plots).

Each module is a `vidbench` command (`add_arguments(parser)` and `run(args)`); heavy imports
(pandas, matplotlib) happen inside functions so importing the package stays cheap.
"""
