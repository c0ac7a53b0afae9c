namespace Weft.Cli;

static class ApiHttp
{
    /// <summary>A client for an OpenAI-compatible server at <paramref name="url"/> (its root, without /v1).</summary>
    /// <exception cref="ArgumentException">The URL is not an absolute http or https URL.</exception>
    public static HttpClient Client(string url, string? apiKey)
    {
        if (!Uri.TryCreate(url.TrimEnd('/') + "/", UriKind.Absolute, out var root)
            || root.Scheme is not ("http" or "https"))
            throw new ArgumentException($"'{url}' is not an http(s) URL such as http://127.0.0.1:8000");
        var http = new HttpClient { BaseAddress = root, Timeout = Timeout.InfiniteTimeSpan };
        if (apiKey is not null) http.DefaultRequestHeaders.Authorization = new("Bearer", apiKey);
        return http;
    }
}
