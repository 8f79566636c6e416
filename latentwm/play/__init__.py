"""Play inside a trained world model: a local web page that steers it from the keyboard.

    python -m latentwm.play --results results [--port 8765]

game.py holds the model and the players' sessions, server.py the HTTP API and the page (page.html).
"""
