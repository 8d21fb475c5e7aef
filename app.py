"""``python app.py`` (and a Hugging Face Space's ``app_file``): start TsallisPGD Explorer.

The ``app/`` package next to this file takes precedence over it on import, so ``import app`` below loads the
package (which disables analytics and telemetry before Gradio is imported).
"""

from app import main

if __name__ == "__main__":
    main()
