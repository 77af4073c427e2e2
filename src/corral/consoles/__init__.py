"""The browser console: single-use tickets, the console page and the WebSocket-to-VNC proxy."""
