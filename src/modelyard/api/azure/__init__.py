"""The Azure surfaces: Azure AI Inference (`/models/...`) and Azure OpenAI
(`/openai/deployments/{deployment}/...`). Both convert into the canonical OpenAI request."""
