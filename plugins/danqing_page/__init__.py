"""The DanQing crawl page (plugins/danqing_plugin.py mounts it): what it shows (crawl.py) and how (html.py).

Listed in plugins/.airflowignore: Airflow imports every file of the plugins folder as a plugin, these are not.
"""
