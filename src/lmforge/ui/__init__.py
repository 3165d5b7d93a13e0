"""`lmforge ui`: a web app over the project: runs, reports, registry, playground, review, monitoring."""
