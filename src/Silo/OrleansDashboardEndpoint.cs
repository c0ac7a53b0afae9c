using System.Text;
using Orleans.Dashboard;
using Weft.Abstractions;

namespace Weft.Silo;

/// <summary>
/// The Orleans Dashboard (Microsoft.Orleans.Dashboard) on the HTTP API's port, with --orleans-dashboard. It shows
/// every grain of the cluster, every tenant's conversations among them, so with API keys only tenant "default"'s
/// key opens it: as a Bearer token (scripts), or as the password of HTTP Basic authentication, which a browser asks
/// for on the 401 and then sends with the page's own requests (a page cannot be told to send a Bearer header).
/// </summary>
static class OrleansDashboardEndpoint
{
    public const string Path = "/orleans-dashboard";

    public static void MapWeftOrleansDashboard(this WebApplication app, Tenants tenants)
    {
        if (tenants.RequireKey)
            app.Use((ctx, next) =>
            {
                if (!ctx.Request.Path.StartsWithSegments(Path) || IsOperator(ctx.Request, tenants)) return next(ctx);
                ctx.Response.StatusCode = StatusCodes.Status401Unauthorized;
                ctx.Response.Headers.WWWAuthenticate = "Basic realm=\"weft\", charset=\"UTF-8\"";
                return ctx.Response.WriteAsync("the Orleans Dashboard needs the API key of tenant 'default': " +
                    "'Authorization: Bearer <key>', or any user name with the key as password\n");
            });
        app.MapOrleansDashboard(Path);
    }

    static bool IsOperator(HttpRequest request, Tenants tenants)
    {
        string authorization = request.Headers.Authorization.ToString();
        if (authorization.StartsWith("Basic ", StringComparison.OrdinalIgnoreCase))
        {
            string userAndPassword;
            try
            {
                userAndPassword = Encoding.UTF8.GetString(Convert.FromBase64String(authorization["Basic ".Length..]));
            }
            catch (FormatException)
            {
                return false;
            }
            int colon = userAndPassword.IndexOf(':', StringComparison.Ordinal);
            if (colon < 0) return false;
            authorization = "Bearer " + userAndPassword[(colon + 1)..];
        }
        return tenants.Resolve(authorization) == WeftDefaults.Tenant;
    }
}
