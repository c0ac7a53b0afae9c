using System.Net;
using System.Net.Sockets;
using Npgsql;

namespace Weft.Silo.Tests;

/// <summary>What the tests that start silos of their own share: free ports, and the throwaway databases they make on
/// the test PostgreSQL.</summary>
static class TestHosts
{
    public static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }

    /// <summary>Drops <paramref name="database"/> on <paramref name="server"/>, closing its pooled connections
    /// first.</summary>
    public static async Task DropDatabaseAsync(string server, string database)
    {
        NpgsqlConnection.ClearAllPools();
        await using var connection = new NpgsqlConnection(server);
        await connection.OpenAsync(CancellationToken.None);
        await using var drop = new NpgsqlCommand($"DROP DATABASE IF EXISTS {database} WITH (FORCE)", connection);
        await drop.ExecuteNonQueryAsync(CancellationToken.None);
    }
}
