"""DanQing pipeline core: Chinese image-text pairs from Common Crawl, without Airflow."""

__version__ = "0.1.0"
