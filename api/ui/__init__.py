"""The dashboard under ``/ui``: HTML pages, their static assets (package data, no CDN), one JSON
endpoint per page, and the sign-in that lets a browser through when an API key is set."""
