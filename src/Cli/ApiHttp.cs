namespace Weft.Cli;

static class ApiHttp
{
    /// <summary>A client for an OpenAI-compatible server at <paramref name="url"/>: its root or, as the OpenAI SDKs
    /// take it, its /v1 path; requests name paths under the root ("v1/models").</summary>
    /// <exception cref="ArgumentException">The URL is not an absolute http or https URL.</exception>
    public static HttpClient Client(string url, string? apiKey)
    {
        var http = new HttpClient { BaseAddress = Root(url), Timeout = Timeout.InfiniteTimeSpan };
        if (apiKey is not null) http.DefaultRequestHeaders.Authorization = new("Bearer", apiKey);
        return http;
    }

    /// <summary>The server's root with a trailing slash: http://host:8000, http://host:8000/ and http://host:8000/v1
    /// all give http://host:8000/.</summary>
    public static Uri Root(string url)
    {
        string trimmed = url.Trim().TrimEnd('/');
        if (trimmed.EndsWith("/v1", StringComparison.OrdinalIgnoreCase)) trimmed = trimmed[..^3];
        if (!Uri.TryCreate(trimmed + "/", UriKind.Absolute, out var root) || root.Scheme is not ("http" or "https"))
            throw new ArgumentException($"'{url}' is not an http(s) URL such as http://127.0.0.1:8000");
        return root;
    }
}
