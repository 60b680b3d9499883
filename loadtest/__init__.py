"""Load testing the API with locust: the traffic model, the runner and the locustfile."""
