using System.Net;
using System.Net.Http.Headers;
using System.Text;

namespace Weft.Silo.Tests;

/// <summary>A silo with --orleans-dashboard and an API key.</summary>
public sealed class DashboardSilo : SiloFixture
{
    public const string Key = "dashboard-key";
    protected override string[] Options => ["--orleans-dashboard", "--api-key", Key];
}

/// <summary>The Orleans Dashboard behind --orleans-dashboard, on the HTTP port and behind the API key.</summary>
public sealed class OrleansDashboardTests(DashboardSilo silo) : IClassFixture<DashboardSilo>
{
    static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task The_dashboard_page_needs_the_api_key_as_a_bearer_token_or_a_basic_password()
    {
        using (var anonymous = await silo.Http.GetAsync("/orleans-dashboard", Ct))
        {
            Assert.Equal(HttpStatusCode.Unauthorized, anonymous.StatusCode);
            Assert.Equal("Basic", Assert.Single(anonymous.Headers.WwwAuthenticate).Scheme);
        }
        using (var wrong = await GetAsync("/orleans-dashboard", new("Bearer", "not-the-key")))
            Assert.Equal(HttpStatusCode.Unauthorized, wrong.StatusCode);

        foreach (var credentials in new AuthenticationHeaderValue[]
        {
            new("Bearer", DashboardSilo.Key),
            new("Basic", Convert.ToBase64String(Encoding.UTF8.GetBytes($"admin:{DashboardSilo.Key}"))),
        })
        {
            // the dashboard redirects its root to "/orleans-dashboard/" (HttpClient drops the header on redirects)
            using var page = await GetAsync("/orleans-dashboard/", credentials);
            Assert.Equal(HttpStatusCode.OK, page.StatusCode);
            Assert.Equal("text/html", page.Content.Headers.ContentType?.MediaType);
            Assert.Contains("<title>Orleans Dashboard</title>", await page.Content.ReadAsStringAsync(Ct),
                StringComparison.Ordinal);
            // what the page's script asks for: the cluster's silos, this one among them once the dashboard has
            // collected its first counters (it does so periodically, not at start)
            await Http.WaitUntil(async () =>
            {
                using var counters = await GetAsync("/orleans-dashboard/DashboardCounters", credentials);
                Assert.Equal(HttpStatusCode.OK, counters.StatusCode);
                return (await counters.Content.ReadAsStringAsync(Ct)).Contains("\"status\":\"Active\"",
                    StringComparison.Ordinal);
            }, "the dashboard's counters list this silo", Ct);
        }
        using (var script = await silo.Http.GetAsync("/orleans-dashboard/index.min.js", Ct))
            Assert.Equal(HttpStatusCode.Unauthorized, script.StatusCode);
        // the API keeps its own check
        using var models = await GetAsync("/v1/models", new("Bearer", DashboardSilo.Key));
        Assert.Equal(HttpStatusCode.OK, models.StatusCode);
    }

    [Fact]
    public void With_keys_but_none_of_tenant_default_the_dashboard_is_refused_at_start()
    {
        string file = Path.GetTempFileName();
        try
        {
            File.WriteAllText(file, "alice alice-key\n");
            var e = Assert.Throws<SiloOptionsException>(() =>
                WeftSilo.Build(["--orleans-dashboard", "--api-keys", file]));
            Assert.Contains("orleans-dashboard", e.Message, StringComparison.Ordinal);
        }
        finally
        {
            File.Delete(file);
        }
    }

    async Task<HttpResponseMessage> GetAsync(string path, AuthenticationHeaderValue credentials)
    {
        using var request = new HttpRequestMessage(HttpMethod.Get, path);
        request.Headers.Authorization = credentials;
        return await silo.Http.SendAsync(request, Ct);
    }
}
