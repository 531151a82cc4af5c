"""segcli: Pareto 80/20 and RFM segmentation into 知心 (VIP) and 遇心 (standard) service tiers."""

__version__ = "1.0.0"
