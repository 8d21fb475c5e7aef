"""``python -m app``: start the explorer (127.0.0.1:7860 unless GRADIO_SERVER_NAME/PORT say otherwise)."""

from app import main

if __name__ == "__main__":
    main()
